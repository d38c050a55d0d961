"""MAFTPlus end to end on a tiny model: output formats, vocabulary behaviour, caching, bad input."""

import logging
from dataclasses import replace

import pytest
import torch
from detectron2.structures import Instances

from maft_plus import native_precision


def test_semantic_output_is_k_by_output_size(tiny_model_factory, tiny_inputs):
    model = tiny_model_factory("MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "scores")
    with torch.no_grad():
        results = model(tiny_inputs)
    assert results[0]["sem_seg"].shape == (4, 64, 80)
    assert results[1]["sem_seg"].shape == (4, 96, 128)
    assert set(results[0]) == {"sem_seg"}


def test_default_semantic_output_is_the_argmax_and_max_of_the_scores(tiny_model, tiny_inputs):
    with torch.no_grad():
        results = tiny_model(tiny_inputs)
        tiny_model.inference_options = replace(
            tiny_model.inference_options, semantic_output="scores"
        )
        dense = tiny_model(tiny_inputs)
    for result, scores, size in zip(results, dense, [(64, 80), (96, 128)], strict=True):
        assert set(result) == {"sem_seg_labels", "sem_seg_confidence"}
        assert (
            result["sem_seg_labels"].shape == size and result["sem_seg_labels"].dtype == torch.int64
        )
        best, labels = scores["sem_seg"].max(dim=0)
        assert torch.equal(result["sem_seg_labels"], labels)
        torch.testing.assert_close(result["sem_seg_confidence"], best)


def test_unknown_semantic_output_is_rejected(tiny_model_factory):
    with pytest.raises(ValueError, match="SEMANTIC_OUTPUT must be one of"):
        tiny_model_factory("MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "probabilities")


def scores_under(tiny_model_factory, tiny_inputs, *opts: str) -> list[torch.Tensor]:
    """Dense semantic scores of the tiny model (same seed, same weights) built with ``opts``."""
    torch.manual_seed(0)
    model = tiny_model_factory("MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "scores", *opts)
    with torch.no_grad():
        return [result["sem_seg"] for result in model(tiny_inputs)]


def test_channels_last_gives_the_same_outputs(tiny_model_factory, tiny_inputs):
    model = tiny_model_factory("MODEL.MAFT_PLUS.CHANNELS_LAST", "True")
    stem = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)  # the option took effect
    plain = scores_under(tiny_model_factory, tiny_inputs)
    fast = scores_under(tiny_model_factory, tiny_inputs, "MODEL.MAFT_PLUS.CHANNELS_LAST", "True")
    for ours, reference in zip(fast, plain, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_bfloat16_autocast_stays_close_and_returns_float32(tiny_model_factory, tiny_inputs):
    plain = scores_under(tiny_model_factory, tiny_inputs)
    fast = scores_under(
        tiny_model_factory, tiny_inputs, "MODEL.MAFT_PLUS.TEST.AUTOCAST", "bfloat16"
    )
    for ours, reference in zip(fast, plain, strict=True):
        assert ours.dtype == torch.float32
        assert not torch.equal(ours, reference)  # it did run in lower precision
        torch.testing.assert_close(ours, reference, rtol=0, atol=0.03)  # scores are in [0, 1]
    with pytest.raises(ValueError, match="AUTOCAST must be one of"):
        tiny_model_factory("MODEL.MAFT_PLUS.TEST.AUTOCAST", "int8")


def test_panoptic_and_instance_outputs(tiny_model_factory):
    model = tiny_model_factory(
        "MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True", "MODEL.MAFT_PLUS.TEST.INSTANCE_ON", "True"
    )
    model.sem_seg_head.predictor.logit_scale.data.fill_(0.0)  # flatter scores keep more queries
    with torch.no_grad():
        results = model([{"image": torch.rand(3, 64, 64) * 255, "height": 32, "width": 40}])
    panoptic_seg, segments_info = results[0]["panoptic_seg"]
    assert panoptic_seg.shape == (32, 40)
    ids = {0} | {s["id"] for s in segments_info}
    assert set(panoptic_seg.unique().tolist()) <= ids
    for segment in segments_info:
        assert 0 <= segment["category_id"] < 4
        assert segment["isthing"] == (segment["category_id"] < 2)
    instances = results[0]["instances"]
    assert isinstance(instances, Instances) and instances.image_size == (32, 40)
    assert instances.pred_masks.shape[1:] == (32, 40)
    assert all(c < 2 for c in instances.pred_classes.tolist())  # things only


def test_permuting_the_vocabulary_permutes_semantic_channels(tiny_model, tiny_inputs, vocabulary):
    tiny_model.inference_options = replace(tiny_model.inference_options, semantic_output="scores")
    with torch.no_grad():
        before = tiny_model(tiny_inputs)[0]["sem_seg"]
        order = [2, 0, 3, 1]
        tiny_model.set_vocabulary([vocabulary[i] for i in order])
        after = tiny_model(tiny_inputs)[0]["sem_seg"]
    torch.testing.assert_close(after, before[order], rtol=1e-4, atol=1e-6)


def test_adding_a_synonym_only_raises_that_class(tiny_model, tiny_inputs):
    tiny_model.inference_options = replace(tiny_model.inference_options, semantic_output="scores")
    images = tiny_model.preprocess(tiny_inputs[:1]).tensor
    with torch.no_grad():
        before = tiny_model.predict(images)
        sem_before = tiny_model(tiny_inputs[:1])[0]["sem_seg"]
        tiny_model.set_vocabulary(["cat, kitty", "dog, puppy, hound", "sky, heaven", "grass"])
        after = tiny_model.predict(images)
        sem_after = tiny_model(tiny_inputs[:1])[0]["sem_seg"]
    for key in ("in_vocab_logits", "out_vocab_logits"):
        assert (after[key][..., 1] >= before[key][..., 1]).all(), key
        others = [0, 2, 3, 4]  # the other classes and void
        torch.testing.assert_close(after[key][..., others], before[key][..., others])
    assert not torch.equal(after["out_vocab_logits"], before["out_vocab_logits"])
    assert (sem_after[1] >= sem_before[1] - 1e-6).all()


def test_text_embeddings_are_cached_per_vocabulary(tiny_model, tiny_inputs, vocabulary):
    calls = []
    encode_text = tiny_model.text_embedder.encode_text

    def counting_encode_text(sentences):
        calls.append(len(sentences))
        return encode_text(sentences)

    tiny_model.text_embedder.encode_text = counting_encode_text
    tiny_model.text_embedder.clear_cache()
    with torch.no_grad():
        tiny_model(tiny_inputs)
        first = sum(calls)
        tiny_model(tiny_inputs)
        tiny_model.set_vocabulary(vocabulary)
        tiny_model(tiny_inputs)
    assert first == 6 * 14  # six synonyms x 14 templates
    assert sum(calls) == first


def test_the_inference_model_has_no_teacher(tiny_model):
    assert not any(k.startswith("backbone_t.") for k in tiny_model.state_dict())


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.zeros(1, 32, 32, dtype=torch.uint8), r"shape \(1, 32, 32\); expected an RGB"),
        (torch.zeros(4, 32, 32, dtype=torch.uint8), r"shape \(4, 32, 32\); expected an RGB"),
        (torch.zeros(32, 32, dtype=torch.uint8), r"shape \(32, 32\); expected an RGB"),
        (torch.zeros(3, 32, 32, dtype=torch.int64), "dtype torch.int64; expected uint8"),
        (torch.zeros(3, 32, 32, dtype=torch.bool), "dtype torch.bool; expected uint8"),
    ],
)
def test_bad_images_are_rejected_by_name(tiny_model, image, message):
    with pytest.raises(ValueError, match=r"batched_inputs\[0\]\['image'\] has " + message):
        tiny_model([{"image": image}])


def test_non_tensor_image_is_rejected(tiny_model):
    with pytest.raises(TypeError, match=r"batched_inputs\[0\]\['image'\] must be a torch.Tensor"):
        tiny_model([{"image": [[0]]}])


def test_empty_vocabulary_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="at least one class"):
        tiny_model.set_vocabulary([])


def test_inference_needs_a_vocabulary(tiny_model_factory):
    model = tiny_model_factory()
    model.vocabulary = None
    with pytest.raises(RuntimeError, match="set_vocabulary"):
        model([{"image": torch.zeros(3, 32, 32)}])


@pytest.mark.slow  # 56,000 prompts through the text tower: tokenizing alone takes ~30 s
def test_thousands_of_classes(tiny_model):
    names = [f"thing number {k}, object {k}" for k in range(2000)]
    tiny_model.set_vocabulary(names)
    with torch.no_grad():
        result = tiny_model([{"image": torch.zeros(3, 32, 40, dtype=torch.uint8)}])[0]
    labels, confidence = result["sem_seg_labels"], result["sem_seg_confidence"]
    assert labels.shape == (32, 40) and labels.min() >= 0 and labels.max() < 2000
    assert torch.isfinite(confidence).all()


def test_a_vocabulary_object_is_used_as_it_is(tiny_model):
    from maft_plus.data.vocabulary import Vocabulary

    vocabulary = Vocabulary.from_names(["cat, kitty", "sky"], [True, False])
    tiny_model.set_vocabulary(vocabulary)
    assert tiny_model.vocabulary is vocabulary  # not parsed again
    with pytest.raises(ValueError, match="a Vocabulary has its own"):
        tiny_model.set_vocabulary(vocabulary, is_thing=[True, True])


def test_a_call_asks_for_at_least_one_task(tiny_model_factory, tiny_model, tiny_inputs):
    from maft_plus.modeling.postprocess import Tasks

    with pytest.raises(ValueError, match="at least one task"):
        Tasks(semantic=False)
    with pytest.raises(ValueError, match="at least one task"):
        tiny_model_factory("MODEL.MAFT_PLUS.TEST.SEMANTIC_ON", "False")
    with torch.no_grad():
        both = tiny_model(tiny_inputs[:1], tasks=Tasks(semantic=True, instance=True))[0]
    assert {"sem_seg_labels", "instances"} <= set(both) and "panoptic_seg" not in both
    assert tiny_model.tasks == Tasks()  # the configured default is untouched


ZEN3_FLAGS = frozenset({"fpu", "avx2", "fma"})
SAPPHIRE_RAPIDS_FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize(("flags", "warned"), [(ZEN3_FLAGS, True), (SAPPHIRE_RAPIDS_FLAGS, False)])
def test_inference_warns_when_its_autocast_is_emulated_on_this_cpu(
    monkeypatch, caplog, tiny_model_factory, tiny_inputs, flags, warned
):
    monkeypatch.setattr(native_precision, "_warned", set())
    monkeypatch.setattr(native_precision, "_this_cpu_flags", lambda: flags)
    model = tiny_model_factory("MODEL.MAFT_PLUS.TEST.AUTOCAST", "bfloat16")
    with caplog.at_level(logging.WARNING, logger="maft_plus.native_precision"), torch.no_grad():
        model(tiny_inputs)
        model(tiny_inputs)
    messages = [r.getMessage() for r in caplog.records if r.name == "maft_plus.native_precision"]
    if warned:
        assert len(messages) == 1  # once per process
        assert messages[0].startswith("MODEL.MAFT_PLUS.TEST.AUTOCAST runs inference in bfloat16")
    else:
        assert messages == []


def test_a_float32_model_never_reads_the_cpu_flags(monkeypatch, tiny_model, tiny_inputs):
    def fail(*args, **kwargs):
        raise AssertionError("native_flags read for a float32 model")

    monkeypatch.setattr(native_precision, "native_flags", fail)
    with torch.no_grad():
        tiny_model(tiny_inputs)
