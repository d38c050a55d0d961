"""The masked-attention decoder: official parameter layout, output shapes, vocabulary behaviour."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maft_plus.modeling.position_encoding import sine_position_encoding
from maft_plus.modeling.transformer_decoder import (
    MAFTPlusTransformerDecoder,
    TextClasses,
    build_attention_mask,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
PREFIX = "sem_seg_head.predictor."

HIDDEN, NUM_QUERIES, NUM_LAYERS, EMBED_DIM, BATCH = 32, 8, 3, 16, 2
SYNONYM_TO_CLASS = torch.tensor([0, 1, 1, 1, 2])  # classes with 1, 3 and 1 synonyms
NUM_CLASSES = 3


def official_predictor_entries(contract: str) -> list[tuple[str, tuple[int, ...]]]:
    path = CONTRACTS / contract
    entries = json.loads(path.read_text())
    return [
        (name[len(PREFIX) :], tuple(shape)) for name, shape in entries if name.startswith(PREFIX)
    ]


@pytest.mark.parametrize(("contract", "embed_dim"), [("maftp_l.json", 768), ("maftp_b.json", 640)])
def test_state_dict_matches_the_official_checkpoint(contract, embed_dim):
    expected = official_predictor_entries(contract)
    with torch.device("meta"):
        decoder = MAFTPlusTransformerDecoder(in_channels=256, embed_dim=embed_dim)
    ours = [(name, tuple(t.shape)) for name, t in decoder.state_dict().items()]
    assert ours == expected


@pytest.fixture
def decoder() -> MAFTPlusTransformerDecoder:
    return MAFTPlusTransformerDecoder(
        in_channels=HIDDEN,
        hidden_dim=HIDDEN,
        num_queries=NUM_QUERIES,
        num_heads=4,
        dim_feedforward=64,
        num_layers=NUM_LAYERS,
        mask_dim=HIDDEN,
        embed_dim=EMBED_DIM,
    )


@pytest.fixture
def inputs() -> dict:
    """Pixel-decoder outputs of a 64x64 image: levels 2x2, 4x4, 8x8 and 16x16 mask features."""
    return {
        "multi_scale_features": [torch.randn(BATCH, HIDDEN, s, s) for s in (2, 4, 8)],
        "mask_features": torch.randn(BATCH, HIDDEN, 16, 16),
    }


def text_embeds(num_synonyms: int) -> torch.Tensor:
    return F.normalize(torch.randn(num_synonyms + 1, EMBED_DIM), dim=-1)  # (S+1, D), void last


def all_predictions(outputs: dict) -> list[dict]:
    return [*outputs["aux_outputs"], outputs]


def test_output_shapes(decoder, inputs):
    outputs = decoder(**inputs, text=TextClasses(text_embeds(5), SYNONYM_TO_CLASS, 3))
    assert len(outputs["aux_outputs"]) == NUM_LAYERS
    for prediction in all_predictions(outputs):
        assert prediction["pred_logits"].shape == (BATCH, NUM_QUERIES, NUM_CLASSES + 1)
        assert prediction["pred_masks"].shape == (BATCH, NUM_QUERIES, 16, 16)
        assert torch.isfinite(prediction["pred_logits"]).all()


def test_inference_without_aux_predictions_gives_the_same_final_outputs(decoder, inputs):
    text = TextClasses(text_embeds(5), SYNONYM_TO_CLASS, 3)
    with torch.no_grad():
        full = decoder(**inputs, text=text)
        lean = decoder(**inputs, text=text, with_aux=False)
    assert lean["aux_outputs"] == []
    assert torch.equal(lean["pred_logits"], full["pred_logits"])
    assert torch.equal(lean["pred_masks"], full["pred_masks"])


def test_layer_i_attends_to_level_i_mod_3_masked_by_the_previous_prediction(decoder, inputs):
    seen = []

    def record(module, args, kwargs, output):
        seen.append((args[1], kwargs["pos"], kwargs["attn_mask"]))

    for layer in decoder.transformer_cross_attention_layers:
        layer.register_forward_hook(record, with_kwargs=True)
    outputs = decoder(**inputs, text=TextClasses(text_embeds(5), SYNONYM_TO_CLASS, 3))

    assert len(seen) == NUM_LAYERS
    for i, (memory, pos, attn_mask) in enumerate(seen):
        feature = inputs["multi_scale_features"][i % 3]
        size = feature.shape[-2:]
        # the level embedding goes into the memory, the sine encoding is the position
        expected_memory = feature.flatten(2).transpose(1, 2) + decoder.level_embed.weight[i % 3]
        torch.testing.assert_close(memory, expected_memory)
        expected_pos = sine_position_encoding(BATCH, *size, HIDDEN // 2).flatten(2).transpose(1, 2)
        torch.testing.assert_close(pos, expected_pos)
        previous_masks = outputs["aux_outputs"][i]["pred_masks"]
        resized = F.interpolate(previous_masks, size=size, mode="bilinear", align_corners=False)
        # equal but where a logit is within rounding of 0 (none is here)
        assert torch.equal(attn_mask, build_attention_mask(resized))


def test_every_parameter_gets_a_gradient(decoder, inputs):
    outputs = decoder(**inputs, text=TextClasses(text_embeds(5), SYNONYM_TO_CLASS, 3))
    loss = sum(
        (p["pred_logits"] * torch.randn_like(p["pred_logits"])).sum()
        + (p["pred_masks"] * torch.randn_like(p["pred_masks"])).sum()
        for p in all_predictions(outputs)
    )
    loss.backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_adding_a_synonym_can_only_raise_its_class(decoder, inputs):
    text = text_embeds(5)
    before = decoder(**inputs, text=TextClasses(text, SYNONYM_TO_CLASS, 3))
    # class 0 gains the opposite of its only synonym: its logit becomes |logit|
    extended_text = torch.cat((text[:5], -text[:1], text[5:]))  # (S+2, D), void still last
    extended_map = torch.cat((SYNONYM_TO_CLASS, torch.tensor([0])))
    after = decoder(**inputs, text=TextClasses(extended_text, extended_map, 3))

    for old, new in zip(all_predictions(before), all_predictions(after), strict=True):
        assert torch.equal(old["pred_masks"], new["pred_masks"])
        torch.testing.assert_close(new["pred_logits"][..., 1:], old["pred_logits"][..., 1:])
        assert (new["pred_logits"][..., 0] >= old["pred_logits"][..., 0] - 1e-5).all()
        assert (new["pred_logits"][..., 0] > old["pred_logits"][..., 0] + 1e-3).any()


def test_permuting_classes_permutes_logit_columns(decoder, inputs):
    text = text_embeds(5)
    before = decoder(**inputs, text=TextClasses(text, SYNONYM_TO_CLASS, 3))
    perm = [2, 0, 1]  # new class j is old class perm[j]
    rows, new_map = [], []
    for new_class, old_class in enumerate(perm):
        for synonym in SYNONYM_TO_CLASS.eq(old_class).nonzero().flatten().tolist():
            rows.append(text[synonym])
            new_map.append(new_class)
    permuted_text = torch.stack([*rows, text[-1]])  # (S+1, D), void still last
    after = decoder(
        **inputs,
        text=TextClasses(permuted_text, torch.tensor(new_map), 3),
    )

    for old, new in zip(all_predictions(before), all_predictions(after), strict=True):
        torch.testing.assert_close(new["pred_logits"], old["pred_logits"][..., perm + [3]])
        assert torch.equal(old["pred_masks"], new["pred_masks"])


def test_in_channels_must_equal_hidden_dim():
    with pytest.raises(ValueError, match="in_channels"):
        MAFTPlusTransformerDecoder(in_channels=64, hidden_dim=32, embed_dim=16)


def test_wrong_text_width_names_the_input(decoder, inputs):
    with pytest.raises(ValueError, match=r"text\.embeds"):
        decoder(
            **inputs,
            text=TextClasses(torch.randn(6, EMBED_DIM + 1), SYNONYM_TO_CLASS, 3),
        )
