"""Mask-aware loss: hand-made values, parity with a per-segment reference, the best-instance
variant, where gradients go, and empty batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from maft_plus.modeling.losses import mask_aware_loss

BIG = 100.0  # sigmoid(100) == 1 and sigmoid(-100) ~ 0 in float32


def hand_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """B=1, Q=2, K=2 on 2x2 masks: query 0 has probs (0.5, 0.5) and covers the top row; query 1
    has probs (0.75, 0.25) and covers the top-left pixel."""
    logits = torch.tensor([[[0.0, 0.0, 5.0], [math.log(3.0), 0.0, -2.0]]])  # (1, 2, 3)
    masks = torch.full((1, 2, 2, 2), -BIG)
    masks[0, 0, 0, :] = BIG
    masks[0, 1, 0, 0] = BIG
    return logits, masks


def smooth_l1(diff: float) -> float:
    return 0.5 * diff**2 if abs(diff) < 1 else abs(diff) - 0.5


def naive_mask_aware_loss(
    out_vocab_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    targets: list[dict],
    best_instance: bool = False,
) -> torch.Tensor:
    """The released computation: a full-size copy of the masks per segment, a loop over segments."""
    num_classes = out_vocab_logits.shape[-1] - 1
    probs = out_vocab_logits[..., :num_classes].softmax(dim=-1)
    scores, iou_targets = [], []
    for b, target in enumerate(targets):
        if len(target["labels"]) == 0:
            continue
        size = target["masks"].shape[-2:]
        upsampled = F.interpolate(
            mask_logits[b : b + 1].detach().sigmoid(),
            size=size,
            mode="bilinear",
            align_corners=False,
        )[0]
        per_entry = {}
        for i, (label, mask) in enumerate(
            zip(target["labels"].tolist(), target["masks"], strict=True)
        ):
            pred = upsampled.clone()
            gt = mask.float()[None].repeat(pred.shape[0], 1, 1)
            inter = (pred * gt).sum(dim=(1, 2))
            iou = inter / (gt.sum(dim=(1, 2)) + pred.sum(dim=(1, 2)) - inter + 1e-7)
            key = label if best_instance else i
            if key in per_entry:
                per_entry[key] = (label, torch.maximum(per_entry[key][1], iou))
            else:
                per_entry[key] = (label, iou)
        for label, iou in per_entry.values():
            iou_targets.append((iou - iou.min()) / (iou.max() - iou.min() + 1e-8))
            scores.append(probs[b, :, label])
    score, iou_target = torch.stack(scores), torch.stack(iou_targets)
    diff = (score - iou_target).abs()
    return torch.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()


def random_targets(labels_per_image: list[list[int]], size: tuple[int, int]) -> list[dict]:
    targets = []
    for i, labels in enumerate(labels_per_image):
        masks = torch.rand(len(labels), *size) > 0.6
        targets.append(
            {
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": masks if i % 2 == 0 else masks.float(),  # bool and float both accepted
            }
        )
    return targets


def test_one_segment_by_hand():
    logits, masks = hand_inputs()
    target = {"labels": torch.tensor([0]), "masks": torch.tensor([[[1, 1], [0, 0]]]).bool()}
    # IoUs (1, 0.5) -> normalized (1, 0); class-0 scores (0.5, 0.75).
    expected = (smooth_l1(0.5 - 1.0) + smooth_l1(0.75 - 0.0)) / 2
    assert expected == pytest.approx(0.203125)
    torch.testing.assert_close(mask_aware_loss(logits, masks, [target]), torch.tensor(expected))


def test_two_segments_by_hand():
    logits, masks = hand_inputs()
    gt = torch.tensor([[[1, 1], [0, 0]], [[0, 1], [1, 1]]]).bool()
    target = {"labels": torch.tensor([0, 1]), "masks": gt}
    # Segment 1 (class 1): IoUs (1/4, 0) -> normalized (1, 0); class-1 scores (0.5, 0.25).
    expected = (smooth_l1(0.5 - 1.0) + smooth_l1(0.75) + smooth_l1(0.5 - 1.0) + smooth_l1(0.25)) / 4
    torch.testing.assert_close(mask_aware_loss(logits, masks, [target]), torch.tensor(expected))


def test_void_column_is_excluded_from_the_softmax():
    logits, masks = hand_inputs()
    target = {"labels": torch.tensor([0]), "masks": torch.tensor([[[1, 1], [0, 0]]]).bool()}
    shifted = logits.clone()
    shifted[..., -1] = torch.tensor([-30.0, 40.0])
    torch.testing.assert_close(
        mask_aware_loss(shifted, masks, [target]), mask_aware_loss(logits, masks, [target])
    )


@pytest.mark.parametrize("pixel_chunk", [1, 7, 100, 192, 5000])
@pytest.mark.parametrize("best_instance", [False, True])
def test_matches_the_per_segment_reference(pixel_chunk: int, best_instance: bool):
    logits = torch.randn(3, 5, 5) * 2  # (B, Q, K+1), K = 4
    masks = torch.randn(3, 5, 6, 4) * 3  # upsampled to 12 x 16
    labels = [[2, 0, 2, 3], [], [1, 1, 1]] if best_instance else [[2, 0, 3], [], [1]]
    targets = random_targets(labels, (12, 16))
    got = mask_aware_loss(
        logits, masks, targets, best_instance=best_instance, pixel_chunk=pixel_chunk
    )
    expected = naive_mask_aware_loss(logits, masks, targets, best_instance=best_instance)
    torch.testing.assert_close(got, expected)


def test_best_instance_keeps_the_best_fitting_instance_by_hand():
    logits, masks = hand_inputs()
    gt = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [1, 1]]]).bool()
    target = {"labels": torch.tensor([0, 0, 1]), "masks": gt}
    # Class 0 (instances A, B): query 0 covers A+B (IoUs 1/2, 1/2), query 1 is A exactly (IoUs
    # 1, 0); the max per query is (1/2, 1) -> normalized (0, 1), against scores (0.5, 0.75). (The
    # union A+B as one mask would give (1, 1/2) -> (1, 0).) Class 1: IoUs (0, 0) -> (0, 0),
    # against scores (0.5, 0.25). Two entries, not three.
    expected = (smooth_l1(0.5) + smooth_l1(0.75 - 1.0) + smooth_l1(0.5) + smooth_l1(0.25)) / 4
    assert expected == pytest.approx(0.078125)
    got = mask_aware_loss(logits, masks, [target], best_instance=True)
    torch.testing.assert_close(got, torch.tensor(expected))
    semantic = mask_aware_loss(logits, masks, [target], best_instance=False)
    assert not torch.allclose(semantic, got)


def test_best_instance_equals_semantic_with_one_instance_per_class():
    logits = torch.randn(2, 6, 4)
    masks = torch.randn(2, 6, 8, 8)
    targets = random_targets([[2, 0, 1], [1, 2]], (16, 16))
    torch.testing.assert_close(
        mask_aware_loss(logits, masks, targets, best_instance=True),
        mask_aware_loss(logits, masks, targets, best_instance=False),
    )


def test_gradient_reaches_class_logits_not_masks():
    logits = torch.randn(2, 4, 4, requires_grad=True)
    masks = torch.randn(2, 4, 8, 8, requires_grad=True)
    targets = random_targets([[0, 2], [1]], (16, 16))
    mask_aware_loss(logits, masks, targets).backward()
    assert logits.grad is not None and logits.grad[..., :3].abs().sum() > 0
    assert masks.grad is None


def test_a_batch_without_segments_gives_a_zero_with_a_gradient_path():
    logits = torch.randn(2, 4, 4, requires_grad=True)
    masks = torch.randn(2, 4, 8, 8, requires_grad=True)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16)}
    loss = mask_aware_loss(logits, masks, [empty, dict(empty)])
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_images_without_segments_contribute_nothing():
    logits = torch.randn(2, 4, 4)
    masks = torch.randn(2, 4, 8, 8)
    targets = random_targets([[0, 2], []], (16, 16))
    torch.testing.assert_close(
        mask_aware_loss(logits, masks, targets), mask_aware_loss(logits[:1], masks[:1], targets[:1])
    )


def test_bad_inputs_are_rejected():
    logits, masks = hand_inputs()
    target = {"labels": torch.tensor([2]), "masks": torch.ones(1, 2, 2)}
    with pytest.raises(ValueError, match=r"\[0, K\)"):
        mask_aware_loss(logits, masks, [target])
    with pytest.raises(ValueError, match="one target dict per image"):
        mask_aware_loss(logits, masks, [])
    with pytest.raises(ValueError, match="mask_logits"):
        mask_aware_loss(logits, masks[:, :1], [target])
    bad = {"labels": torch.tensor([0, 1]), "masks": torch.ones(1, 2, 2)}
    with pytest.raises(ValueError, match="one N"):
        mask_aware_loss(logits, masks, [bad])
