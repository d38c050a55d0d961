"""Tests for the panoptic and instance rules of maft_plus.modeling.postprocess: hand-made cases."""

import math

import pytest
import torch
from detectron2.structures import BitMasks

from maft_plus.modeling.postprocess import instance_inference, panoptic_inference
from maft_plus.modeling.postprocess.instance import _mask_bounding_boxes

LN3 = math.log(3.0)  # sigmoid(LN3) = 0.75
LN9 = math.log(9.0)  # sigmoid(LN9) = 0.9


# ---------------------------------------------------------------- panoptic_inference

# K = 5 classes: 0 and 2 things, 1, 3, 4 stuff.
IS_THING = [True, False, True, False, False]


def _panoptic_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Six queries on a 4x6 image (in-mask logit +5, elsewhere -5)."""
    class_probs = torch.tensor(
        [
            [0.90, 0.02, 0.02, 0.02, 0.02, 0.02],  # q0: thing 0, kept
            [0.04, 0.80, 0.04, 0.04, 0.04, 0.04],  # q1: stuff 1, kept
            [0.06, 0.70, 0.06, 0.06, 0.06, 0.06],  # q2: stuff 1, merged into q1's segment
            [0.18, 0.18, 0.18, 0.18, 0.18, 0.10],  # q3: score 0.18 <= 0.2, dropped
            [0.02, 0.02, 0.02, 0.02, 0.02, 0.90],  # q4: void, dropped
            [0.10, 0.10, 0.50, 0.10, 0.10, 0.10],  # q5: thing 2, wins 1 of 5 pixels, dropped
        ]
    )  # (Q=6, K+1=6)
    mask_logits = torch.full((6, 4, 6), -5.0)
    mask_logits[0, 0:2, 0:2] = 5.0
    mask_logits[1, 0:2, 2:4] = 5.0
    mask_logits[2, 2:4, 2:4] = 5.0
    mask_logits[3, 2:4, 4:6] = 5.0
    mask_logits[4, 0:2, 4:6] = 5.0
    mask_logits[5, 0:2, 0:2] = 5.0  # under q0, which scores higher there
    mask_logits[5, 2, 0] = 5.0  # the only pixel q5 wins
    return class_probs, mask_logits


def test_panoptic_inference_hand_made_case() -> None:
    class_probs, mask_logits = _panoptic_case()
    panoptic_seg, segments_info = panoptic_inference(class_probs, mask_logits, IS_THING)
    expected = torch.tensor(
        [
            [1, 1, 2, 2, 0, 0],
            [1, 1, 2, 2, 0, 0],
            [0, 0, 2, 2, 0, 0],
            [0, 0, 2, 2, 0, 0],
        ],
        dtype=torch.int32,
    )
    assert panoptic_seg.dtype == torch.int32
    assert torch.equal(panoptic_seg, expected)
    assert segments_info == [
        {"id": 1, "category_id": 0, "isthing": True, "score": pytest.approx(0.90)},
        {"id": 2, "category_id": 1, "isthing": False, "score": pytest.approx(0.80)},  # q1's
    ]
    assert all(type(info["isthing"]) is bool for info in segments_info)


def test_panoptic_inference_thresholds_change_the_result() -> None:
    class_probs, mask_logits = _panoptic_case()
    # A low overlap threshold keeps q5 with the single pixel it wins.
    panoptic_seg, segments_info = panoptic_inference(
        class_probs, mask_logits, IS_THING, overlap_threshold=0.1
    )
    assert segments_info[-1] == {
        "id": 3,
        "category_id": 2,
        "isthing": True,
        "score": pytest.approx(0.5),
    }
    assert torch.equal(torch.nonzero(panoptic_seg == 3), torch.tensor([[2, 0]]))
    # A lower score threshold keeps q3 (class 0, a thing) on its own block.
    panoptic_seg, segments_info = panoptic_inference(
        class_probs, mask_logits, IS_THING, object_mask_threshold=0.1
    )
    assert segments_info[-1] == {
        "id": 3,
        "category_id": 0,
        "isthing": True,
        "score": pytest.approx(0.18),
    }
    assert (panoptic_seg[2:4, 4:6] == 3).all()


def test_panoptic_inference_stuff_segments_not_merged_across_classes() -> None:
    class_probs, mask_logits = _panoptic_case()
    class_probs[2] = torch.tensor([0.06, 0.06, 0.06, 0.70, 0.06, 0.06])  # q2 now stuff class 3
    panoptic_seg, segments_info = panoptic_inference(class_probs, mask_logits, IS_THING)
    assert [info["category_id"] for info in segments_info] == [0, 1, 3]
    assert (panoptic_seg[2:4, 2:4] == 3).all()


def test_panoptic_inference_empty() -> None:
    class_probs = torch.tensor(
        [[0.02, 0.02, 0.02, 0.02, 0.02, 0.90], [0.18, 0.18, 0.18, 0.18, 0.18, 0.10]]
    )
    panoptic_seg, segments_info = panoptic_inference(class_probs, torch.randn(2, 4, 6), IS_THING)
    assert segments_info == []
    assert panoptic_seg.shape == (4, 6) and panoptic_seg.dtype == torch.int32
    assert not panoptic_seg.any()


def test_panoptic_inference_bad_inputs() -> None:
    class_probs, mask_logits = _panoptic_case()
    with pytest.raises(ValueError, match="is_thing"):
        panoptic_inference(class_probs, mask_logits, IS_THING[:-1])
    with pytest.raises(ValueError, match="mask_logits"):
        panoptic_inference(class_probs, mask_logits[:-1], IS_THING)


# ---------------------------------------------------------------- instance_inference

INSTANCE_IS_THING = [True, False, True]


def _instance_case() -> tuple[torch.Tensor, torch.Tensor]:
    class_probs = torch.tensor(
        [
            [0.60, 0.30, 0.05, 0.05],
            [0.10, 0.70, 0.15, 0.05],
            [0.20, 0.05, 0.50, 0.25],
        ]
    )  # (Q=3, K+1=4)
    mask_logits = torch.full((3, 4, 4), -2.0)
    mask_logits[0, 1:3, 0:3] = torch.tensor([[LN3, LN3, LN3], [LN9, LN9, LN9]])  # rectangle
    mask_logits[1] = -1.0  # empty mask
    mask_logits[2, 3, 3] = LN3  # one pixel
    return class_probs, mask_logits


def test_instance_inference_top_k_and_thing_filter() -> None:
    class_probs, mask_logits = _instance_case()
    # Top 4 pairs: (q1, 1) 0.7 stuff, (q0, 0) 0.6, (q2, 2) 0.5, (q0, 1) 0.3 stuff.
    result = instance_inference(class_probs, mask_logits, INSTANCE_IS_THING, top_k=4)
    assert result.image_size == (4, 4)
    assert result.pred_classes.tolist() == [0, 2]
    assert result.pred_classes.dtype == torch.int64
    assert result.pred_masks.dtype == torch.bool
    assert torch.equal(result.pred_masks, mask_logits[[0, 2]] > 0)
    # Mask scores: mean(0.75 x3, 0.9 x3) = 0.825 and 0.75, each over (area + 1e-6).
    expected_scores = torch.tensor([0.6 * 0.825 * 6 / (6 + 1e-6), 0.5 * 0.75 / (1 + 1e-6)])
    torch.testing.assert_close(result.scores, expected_scores)
    boxes = result.pred_boxes.tensor
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 1.0, 3.0, 3.0], [3.0, 3.0, 4.0, 4.0]]))


def test_instance_inference_top_k_capped_and_ordered() -> None:
    class_probs, mask_logits = _instance_case()
    result = instance_inference(class_probs, mask_logits, INSTANCE_IS_THING, top_k=100)
    # All 6 thing pairs, in descending class probability: 0.6, 0.5, 0.2, 0.15, 0.1, 0.05.
    assert result.pred_classes.tolist() == [0, 2, 0, 2, 0, 2]
    assert torch.equal(result.pred_masks, mask_logits[[0, 2, 2, 1, 1, 0]] > 0)
    # The empty mask of q1 scores 0 and has an all-zero box.
    assert result.scores[3] == 0 and result.scores[4] == 0
    assert not result.pred_boxes.tensor[3].any()
    # The filter comes after the top-k: the single best pair (q1, stuff 1) leaves nothing.
    assert len(instance_inference(class_probs, mask_logits, INSTANCE_IS_THING, top_k=1)) == 0
    result = instance_inference(class_probs, mask_logits, INSTANCE_IS_THING, top_k=2)
    assert result.pred_classes.tolist() == [0]


def test_instance_inference_only_stuff_gives_empty_instances() -> None:
    class_probs, mask_logits = _instance_case()
    result = instance_inference(class_probs, mask_logits, [False, False, False])
    assert len(result) == 0
    assert result.pred_masks.shape == (0, 4, 4)
    assert result.pred_boxes.tensor.shape == (0, 4)


def test_mask_bounding_boxes_match_bitmasks() -> None:
    masks = torch.rand(6, 9, 11) > 0.9
    masks[0] = False
    expected = BitMasks(masks).get_bounding_boxes().tensor
    torch.testing.assert_close(_mask_bounding_boxes(masks), expected)


def test_instance_inference_bad_inputs() -> None:
    class_probs, mask_logits = _instance_case()
    with pytest.raises(ValueError, match="is_thing"):
        instance_inference(class_probs, mask_logits, [True, False])
    with pytest.raises(ValueError, match="mask_logits"):
        instance_inference(class_probs, mask_logits[:2], INSTANCE_IS_THING)
    with pytest.raises(ValueError, match="top_k"):
        instance_inference(class_probs, mask_logits, INSTANCE_IS_THING, top_k=0)
