"""Tests for the class probabilities and semantic rules of maft_plus.modeling.postprocess:
hand-made cases with exact values, and parity with naive references."""

import math

import pytest
import torch
import torch.nn.functional as F

from maft_plus.modeling.postprocess import (
    ImageSizes,
    classification_probs,
    labelling,
    semantic_inference,
    semantic_labels,
)
from maft_plus.modeling.postprocess import semantic as semantic_rule

LN3 = math.log(3.0)  # sigmoid(LN3) = 0.75
LN9 = math.log(9.0)  # sigmoid(LN9) = 0.9


# ---------------------------------------------------------------- classification_probs


def test_classification_probs_hand_computed() -> None:
    # softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2] -> p_void = 1/2
    in_vocab = torch.tensor([[[0.0, 0.0, math.log(2.0)]]])  # (1, 1, 3)
    # softmax([ln 3, 0]) = [3/4, 1/4]; the last column (7.0) is ignored
    out_vocab = torch.tensor([[[LN3, 0.0, 7.0]]])  # (1, 1, 3)
    probs = classification_probs(in_vocab, out_vocab)
    torch.testing.assert_close(probs, torch.tensor([[[3 / 8, 1 / 8, 1 / 2]]]))


def test_classification_probs_rows_sum_to_one() -> None:
    in_vocab = torch.randn(2, 5, 8) * 3
    out_vocab = torch.randn(2, 5, 8) * 3
    probs = classification_probs(in_vocab, out_vocab)
    assert probs.shape == (2, 5, 8)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(probs[..., -1], in_vocab.softmax(-1)[..., -1])


def test_classification_probs_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="out_vocab_logits"):
        classification_probs(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


# ---------------------------------------------------------------- semantic_inference


def _naive_semantic(class_probs, mask_logits, padded_size, image_size, output_size):
    """Unchunked reference: upsample, sigmoid, combine at the padded size, crop, resize."""
    num_classes = class_probs.shape[-1] - 1
    probs = torch.log(class_probs + 1e-8).softmax(-1)[:, :num_classes]  # (Q, K)
    masks = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear", align_corners=False)
    sem = torch.einsum("qk,qhw->khw", probs, masks[0].sigmoid())  # (K, padded H, padded W)
    sem = sem[:, : image_size[0], : image_size[1]]  # (K, image H, image W)
    out = F.interpolate(sem[None], size=output_size, mode="bilinear", align_corners=False)
    return out[0]  # (K, H, W)


def test_semantic_inference_hand_computed() -> None:
    class_probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])  # (Q=2, K+1=3)
    # sigmoids: query 0 -> [0.75, 0.25], query 1 -> [0.5, 0.75]
    mask_logits = torch.tensor([[[LN3, -LN3]], [[0.0, LN3]]])  # (2, 1, 2)
    sem = semantic_inference(class_probs, mask_logits, ImageSizes((1, 2), (1, 2), (1, 2)))
    expected = torch.tensor(
        [
            [[0.5 * 0.75 + 0.1 * 0.5, 0.5 * 0.25 + 0.1 * 0.75]],
            [[0.25 * 0.75 + 0.6 * 0.5, 0.25 * 0.25 + 0.6 * 0.75]],
        ]
    )  # (K=2, 1, 2)
    torch.testing.assert_close(sem, expected, rtol=0, atol=1e-6)


# Sizes: resized output; output = unpadded input (products written straight into the output);
# no padding and no resize (the benchmark's case).
SEMANTIC_SIZES = [
    dict(padded_size=(24, 32), image_size=(21, 27), output_size=(37, 45)),
    dict(padded_size=(24, 32), image_size=(21, 27), output_size=(21, 27)),
    dict(padded_size=(24, 32), image_size=(24, 32), output_size=(24, 32)),
]


@pytest.mark.parametrize("sizes", SEMANTIC_SIZES)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64])
def test_semantic_inference_matches_naive_reference(chunk_size: int, sizes: dict) -> None:
    num_queries, num_classes = 5, 7
    class_probs = torch.randn(num_queries, num_classes + 1).softmax(-1)  # (Q, K+1)
    mask_logits = torch.randn(num_queries, 6, 8) * 4  # (Q, h, w)
    sem = semantic_inference(class_probs, mask_logits, ImageSizes(**sizes), chunk_size=chunk_size)
    assert sem.shape == (num_classes, *sizes["output_size"])
    expected = _naive_semantic(class_probs, mask_logits, **sizes)
    torch.testing.assert_close(sem, expected, rtol=1e-6, atol=1e-6)


def test_semantic_inference_argmax_follows_dominant_query() -> None:
    # Three queries own three row bands of an 8x8 mask; query q is confident in class q.
    mask_logits = torch.full((3, 8, 8), -10.0)
    mask_logits[0, 0:3] = 10.0
    mask_logits[1, 3:6] = 10.0
    mask_logits[2, 6:8] = 10.0
    class_probs = torch.full((3, 4), 0.05)
    class_probs[0, 0] = class_probs[1, 1] = class_probs[2, 2] = 0.85
    # Padded 32x32 (4x), cropped to 32x24 (width only), resized to 64x48 (2x).
    sem = semantic_inference(class_probs, mask_logits, ImageSizes((32, 32), (32, 24), (64, 48)))
    assert sem.shape == (3, 64, 48)
    pred = sem.argmax(0)  # (H, W)
    assert (pred[0:20] == 0).all()
    assert (pred[28:44] == 1).all()
    assert (pred[52:64] == 2).all()


def test_semantic_inference_bad_inputs() -> None:
    with pytest.raises(ValueError, match="mask_logits"):
        semantic_inference(
            torch.rand(3, 4), torch.rand(2, 4, 4), ImageSizes((4, 4), (4, 4), (4, 4))
        )
    with pytest.raises(ValueError, match="image_size"):
        semantic_inference(
            torch.rand(2, 4), torch.rand(2, 4, 4), ImageSizes((4, 4), (5, 4), (4, 4))
        )
    with pytest.raises(ValueError, match="chunk_size"):
        semantic_inference(
            torch.rand(2, 4), torch.rand(2, 4, 4), ImageSizes((4, 4), (4, 4), (4, 4)), chunk_size=0
        )
    with pytest.raises(ValueError, match="mask_logits"):
        semantic_labels(torch.rand(3, 4), torch.rand(2, 4, 4), ImageSizes((4, 4), (4, 4), (4, 4)))


@pytest.mark.parametrize("sizes", SEMANTIC_SIZES)
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_semantic_labels_are_the_argmax_and_max_of_the_scores(chunk_size, sizes) -> None:
    num_queries, num_classes = 5, 7
    class_probs = torch.randn(num_queries, num_classes + 1).softmax(-1)  # (Q, K+1)
    mask_logits = torch.randn(num_queries, 6, 8) * 4  # (Q, h, w)
    labels, confidence = semantic_labels(
        class_probs, mask_logits, ImageSizes(**sizes), chunk_size=chunk_size
    )
    best, expected = semantic_inference(class_probs, mask_logits, ImageSizes(**sizes)).max(dim=0)
    assert labels.dtype == torch.int64 and labels.shape == sizes["output_size"]
    assert torch.equal(labels, expected)
    torch.testing.assert_close(confidence, best, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output_size", [(4, 4), (7, 9)])  # pixel tiles; class chunks
@pytest.mark.parametrize("chunk_size", [1, 2, 64])
def test_semantic_labels_break_ties_towards_the_lower_class(chunk_size, output_size) -> None:
    """Classes 1 and 3 get identical scores everywhere; argmax would pick 1."""
    class_probs = torch.tensor([[0.1, 0.3, 0.0, 0.3, 0.3], [0.2, 0.25, 0.3, 0.25, 0.0]])
    mask_logits = torch.randn(2, 4, 4)
    sizes = ((4, 4), (4, 4), output_size)
    labels, _ = semantic_labels(class_probs, mask_logits, ImageSizes(*sizes), chunk_size=chunk_size)
    assert not (labels == 3).any()
    scores = semantic_inference(class_probs, mask_logits, ImageSizes(*sizes))
    assert torch.equal(scores[1], scores[3])
    assert torch.equal(labels, scores.argmax(dim=0))


def test_chunks_hold_a_bounded_number_of_values_for_very_large_outputs(monkeypatch) -> None:
    """Fewer classes per chunk as the output grows: memory stays bounded, results unchanged."""
    class_probs = torch.randn(4, 9).softmax(-1)  # (Q, K+1), K = 8
    mask_logits = torch.randn(4, 5, 6)
    sizes = dict(padded_size=(20, 24), image_size=(18, 23), output_size=(50, 60))
    expected = semantic_inference(class_probs, mask_logits, ImageSizes(**sizes))
    expected_labels = semantic_labels(class_probs, mask_logits, ImageSizes(**sizes))[0]
    monkeypatch.setattr(semantic_rule, "MAX_CHUNK_ELEMENTS", 3 * 50 * 60)
    seen = []
    real_chunk_scores = semantic_rule._chunk_scores

    def spy(probs_t, masks, output_size, out):
        seen.append(probs_t.shape[0])
        return real_chunk_scores(probs_t, masks, output_size, out)

    monkeypatch.setattr(semantic_rule, "_chunk_scores", spy)
    torch.testing.assert_close(
        semantic_inference(class_probs, mask_logits, ImageSizes(**sizes)), expected
    )
    assert seen == [3, 3, 2]
    monkeypatch.setattr(
        semantic_rule, "MAX_CHUNK_ELEMENTS", 10
    )  # less than one class: one at a time
    assert torch.equal(
        semantic_labels(class_probs, mask_logits, ImageSizes(**sizes))[0], expected_labels
    )


def _peaked_inputs(seed: int, num_queries: int, num_classes: int, mask_size: tuple[int, int]):
    """Predictions shaped like a trained model's: each query sure of one class, smooth masks."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_queries, num_classes + 1, generator=generator)
    favourite = torch.randint(0, num_classes, (num_queries,), generator=generator)
    logits[torch.arange(num_queries), favourite] += 6.0
    coarse = torch.randn(1, num_queries, 3, 3, generator=generator) * 8
    mask_logits = F.interpolate(coarse, size=mask_size, mode="bilinear", align_corners=False)[0]
    return logits.softmax(-1), mask_logits  # (Q, K+1), (Q, h, w)


def _spy_on_candidates(monkeypatch) -> list:
    """Record what `_candidate_classes` returns (None: every class)."""
    found = []
    real = labelling._candidate_classes

    def spy(probs_t, masks, *, resized):
        classes = real(probs_t, masks, resized=resized)
        found.append(probs_t.shape[0] if classes is None else len(classes))
        return classes

    monkeypatch.setattr(labelling, "_candidate_classes", spy)
    return found


@pytest.mark.parametrize("sizes", SEMANTIC_SIZES)
@pytest.mark.parametrize("chunk_size", [1, 64])
@pytest.mark.parametrize("seed", range(6))
def test_semantic_labels_score_only_the_classes_that_can_win(
    monkeypatch, seed, chunk_size, sizes
) -> None:
    """Pruned classes (most of them, here) change nothing: labels are the scores' argmax."""
    num_classes = 60
    class_probs, mask_logits = _peaked_inputs(seed, 12, num_classes, (6, 8))
    best, expected = semantic_inference(class_probs, mask_logits, ImageSizes(**sizes)).max(dim=0)
    monkeypatch.setattr(labelling, "PRUNE_TILE", 4)
    monkeypatch.setattr(labelling, "BAND_ELEMENTS", 12 * 5 * sizes["output_size"][1])
    candidates = _spy_on_candidates(monkeypatch)
    labels, confidence = semantic_labels(
        class_probs, mask_logits, ImageSizes(**sizes), chunk_size=chunk_size
    )
    assert torch.equal(labels, expected)
    torch.testing.assert_close(confidence, best, rtol=1e-6, atol=1e-6)
    assert len(candidates) > 1 and max(candidates) < num_classes / 2  # bands; pruned hard


@pytest.mark.parametrize("resized", [False, True])
def test_candidate_classes_keep_every_winner(monkeypatch, resized) -> None:
    """Brute force over many predictions: every class that wins a pixel is a candidate."""
    monkeypatch.setattr(labelling, "PRUNE_TILE", 2)
    pruned = 0
    for seed in range(20):
        class_probs, mask_logits = _peaked_inputs(seed, 10, 40, (18, 22))
        probs_t = semantic_rule.class_weights(class_probs, torch.float32)  # (K, Q)
        masks = mask_logits.sigmoid()  # (Q, h, w)
        scores = torch.einsum("kq,qhw->khw", probs_t, masks)  # (K, h, w)
        if resized:
            scores = F.interpolate(scores[None], size=(41, 37), mode="bilinear")[0]
        winners = set(scores.argmax(dim=0).flatten().tolist())
        classes = labelling._candidate_classes(probs_t, masks, resized=resized)
        kept = set(range(40)) if classes is None else set(classes.tolist())
        assert winners <= kept, seed
        pruned += classes is not None
    assert pruned >= 10  # the test would pass without any pruning otherwise


def test_candidate_classes_hand_computed() -> None:
    """One tile, queries in [0.8, 0.9] and [0.1, 0.3]: class 0 scores at least 0.8."""
    masks = torch.tensor([[[0.9, 0.8]], [[0.1, 0.3]]])  # (Q=2, 1, 2)
    probs_t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])  # (K=3, Q=2); 1 ties with 0
    # class 2: at most 0.5 * 0.9 + 0.5 * 0.3 = 0.6 < 0.8, pruned; the tied class 1 is kept
    assert labelling._candidate_classes(probs_t, masks, resized=False).tolist() == [0, 1]
    probs_t[2] = torch.tensor([0.85, 0.0])  # at most 0.765 < 0.8: pruned
    assert labelling._candidate_classes(probs_t, masks, resized=False).tolist() == [0, 1]
    probs_t[2] = torch.tensor([0.95, 0.0])  # at most 0.855 > 0.8: the bounds cannot exclude it
    assert labelling._candidate_classes(probs_t, masks, resized=False) is None
    probs_t[2] = torch.tensor([0.5, 0.5])  # pruned again, as above
    assert labelling._candidate_classes(probs_t, masks, resized=False).tolist() == [0, 1]
    masks[0, 0, 0] = float("nan")  # bounds that compare to nothing: no class is pruned
    assert labelling._candidate_classes(probs_t, masks, resized=False) is None


def test_candidate_classes_widen_the_margin_for_reduced_precision_products() -> None:
    """Under TF32 or bfloat16 float32 products, a class 1e-4 below the best is not pruned."""
    masks = torch.full((2, 1, 1), 0.5)  # (Q=2, 1, 1)
    probs_t = torch.tensor([[1.0, 0.0], [0.9999, 0.0]])  # scores 0.5 and 0.49995
    assert labelling._candidate_classes(probs_t, masks, resized=False).tolist() == [0]
    original = torch.get_float32_matmul_precision()
    try:
        for precision in ("high", "medium"):
            torch.set_float32_matmul_precision(precision)
            assert labelling._candidate_classes(probs_t, masks, resized=False) is None
    finally:
        torch.set_float32_matmul_precision(original)


def test_tile_bounds_are_the_minima_and_maxima_of_each_square() -> None:
    masks = torch.rand(3, 7, 10)
    low, high = labelling._tile_bounds(masks, 4)
    assert low.shape == high.shape == (3, 2, 3)  # ragged last row and column of squares
    for i, top in enumerate(range(0, 7, 4)):
        for j, left in enumerate(range(0, 10, 4)):
            square = masks[:, top : top + 4, left : left + 4].flatten(1)
            assert torch.equal(low[:, i, j], square.amin(dim=1))
            assert torch.equal(high[:, i, j], square.amax(dim=1))


@pytest.mark.parametrize("max_elements", [1, 8 * 7, 2**24])  # tiles of 1, 7 and all pixels
@pytest.mark.parametrize("band_elements", [1, 4 * 5 * 23, 2**20])  # bands of 1, 5, all rows
def test_semantic_labels_over_pixel_tiles_match_the_scores(
    monkeypatch, max_elements, band_elements
) -> None:
    class_probs = torch.randn(4, 9).softmax(-1)  # (Q, K+1), K = 8
    mask_logits = torch.randn(4, 5, 6)
    sizes = dict(padded_size=(20, 24), image_size=(18, 23), output_size=(18, 23))  # no resize
    best, expected = semantic_inference(class_probs, mask_logits, ImageSizes(**sizes)).max(dim=0)
    monkeypatch.setattr(labelling, "MAX_CHUNK_ELEMENTS", max_elements)
    monkeypatch.setattr(labelling, "BAND_ELEMENTS", band_elements)
    labels, confidence = semantic_labels(class_probs, mask_logits, ImageSizes(**sizes))
    assert torch.equal(labels, expected)
    torch.testing.assert_close(confidence, best)


@pytest.mark.parametrize(
    ("mask_size", "padded_size"),
    [((5, 6), (20, 24)), ((6, 5), (18, 15)), ((20, 24), (20, 24)), ((5, 6), (21, 26))],
)  # upsampled x4 and x3 (whole multiples), already padded size, not a whole multiple
@pytest.mark.parametrize("band_rows", [1, 2, 5, 40])
def test_mask_rows_are_the_full_upsampling_cut_into_bands(mask_size, padded_size, band_rows):
    mask_logits = torch.randn(3, *mask_size) * 4
    image_size = (padded_size[0] - 2, padded_size[1] - 1)
    expected = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear")[0].sigmoid()
    expected = expected[:, : image_size[0], : image_size[1]]
    rows = labelling._mask_rows(mask_logits, padded_size, image_size)
    tops = range(0, image_size[0], band_rows)
    bands = [rows(top, min(top + band_rows, image_size[0])) for top in tops]
    got = torch.cat(bands, dim=1)
    # equal up to rounding: PyTorch's vectorized sigmoid rounds a run's last few values apart
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
