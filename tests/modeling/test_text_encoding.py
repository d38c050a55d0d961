"""CLIPConvNeXt.encode_text: the truncated, length-sorted path equals open_clip's full length."""

import pytest
import torch

from maft_plus.modeling.backbone.clip_convnext import (
    CLIPConvNeXt,
    encode_tokens_truncated,
    pooled_positions,
)
from maft_plus.modeling.text_classifier import TEMPLATES

SHORT = ["a", "cat", "sky", "a photo of a dog.", "There is a large tree in the scene."]
LONG = "a photo of a " + "very " * 50 + "long caption that almost fills the context"


@pytest.fixture
def backbone(tiny_clip_name: str) -> CLIPConvNeXt:
    return CLIPConvNeXt(model_name=tiny_clip_name, pretrained="")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize(
    "sentences",
    [
        SHORT,
        [LONG] + ["dog"] * 20,  # one long prompt among many short ones
        [t.replace("{}", name) for name in ("cat", "traffic light", "sky") for t in TEMPLATES],
        [LONG + " " + LONG],  # past the context length: the tokenizer cuts it, eot at 76
    ],
)
def test_truncated_equals_full_length(backbone, sentences):
    full = backbone.encode_text(sentences, truncate=False)
    truncated = backbone.encode_text(sentences)
    assert truncated.shape == full.shape == (len(sentences), backbone.embed_dim)
    assert truncated.dtype == torch.float32
    assert max_diff(truncated, full) <= 1e-5


def test_full_length_path_is_open_clips_encode_text(backbone):
    tokens = backbone._tokenizer(SHORT)  # (N, 77)
    expected = backbone.clip_model.encode_text(tokens)
    torch.testing.assert_close(backbone.encode_text(SHORT, truncate=False), expected)


def test_truncation_runs_only_up_to_the_longest_prompt(backbone):
    lengths = []
    handle = backbone.clip_model.transformer.register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1])  # x: (N, L, W)
    )
    try:
        backbone.encode_text(["a cat", "a photo of a dog"])
        backbone.encode_text(["a cat"], truncate=False)
    finally:
        handle.remove()
    tokens = backbone._tokenizer(["a photo of a dog"])
    assert lengths == [int(tokens.argmax(-1)) + 1, 77]


def test_sorting_by_length_restores_the_order(backbone):
    sentences = [LONG, "a", "There is a medium lamp in the scene.", "b c", LONG[:80], "dog"]
    one_by_one = torch.cat([backbone.encode_text([s], truncate=False) for s in sentences])
    for batch_size in (0, 1, 2, 4):
        embeds = backbone.encode_text(sentences, batch_size=batch_size)
        assert max_diff(embeds, one_by_one) <= 1e-5, batch_size
    # a permutation of the input permutes the output
    order = [3, 0, 5, 1, 4, 2]
    permuted = backbone.encode_text([sentences[i] for i in order], batch_size=2)
    assert max_diff(permuted, one_by_one[order]) <= 1e-5


def test_batches_hold_similar_lengths(backbone):
    lengths = []
    handle = backbone.clip_model.transformer.register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1])
    )
    try:
        backbone.encode_text([LONG, "a", "b", LONG, "c", "d"], batch_size=2)
    finally:
        handle.remove()
    short = int(backbone._tokenizer(["a"]).argmax(-1)) + 1
    assert sorted(lengths) == [short, short, max(lengths)] and max(lengths) > short


def test_non_causal_or_fixed_position_pooling_is_not_truncated(backbone):
    tokens = backbone._tokenizer(SHORT)
    assert pooled_positions(backbone.clip_model, tokens) is not None
    backbone.clip_model.text_pool_type = "last"
    assert pooled_positions(backbone.clip_model, tokens) is None
    with pytest.raises(ValueError, match="cannot be truncated"):
        encode_tokens_truncated(backbone.clip_model, tokens)
    full = backbone.encode_text(SHORT)  # falls back to the full length
    assert full.shape == (len(SHORT), backbone.embed_dim)


def test_bad_arguments(backbone):
    with pytest.raises(ValueError, match="at least one sentence"):
        backbone.encode_text([])
    with pytest.raises(ValueError, match="batch_size"):
        backbone.encode_text(["a"], batch_size=-1)
