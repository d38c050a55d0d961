"""Mask-aware loss L_ma: each class score of a query regresses how well the query's mask fits.

For every ground-truth segment, the out-of-vocabulary probability of its class at each query is
pulled towards the soft IoU of that query's mask with the segment, min-max normalized over the
queries. The IoUs of one image come from a single upsampling of its masks and one chunked
(Q, H*W) x (H*W, N) product, not from a full-resolution copy of the masks per segment.

Shapes: B batch, Q queries, K vocabulary classes (the logits carry K+1 columns, the last one void),
h x w the predicted masks, H x W the padded input (the targets' size), N target segments of one
image, U distinct classes among them, P pixels in one chunk.
"""

import torch
import torch.nn.functional as F

IOU_EPS = 1e-7  # added to the IoU denominator
NORM_EPS = 1e-8  # added to (max - min) in the min-max normalization over queries


def soft_ious(
    mask_probs: torch.Tensor, target_masks: torch.Tensor, *, pixel_chunk: int = 65536
) -> torch.Tensor:
    """Soft IoU of every query mask with every binary target, ``sum(p*t) / (sum(t) + sum(p) -
    sum(p*t) + 1e-7)``.

    Args:
        mask_probs: (Q, H, W) mask probabilities.
        target_masks: (N, H, W) binary targets (bool or float), same H x W.
        pixel_chunk: pixels per matrix product; bounds the extra memory to an (N, P) float chunk.

    Returns:
        (Q, N) IoUs in ``mask_probs``' dtype.
    """
    if pixel_chunk < 1:
        raise ValueError(f"pixel_chunk must be a positive integer, got {pixel_chunk}")
    if mask_probs.shape[-2:] != target_masks.shape[-2:]:
        raise ValueError(
            f"soft_ious expects mask_probs (Q, H, W) and target_masks (N, H, W) with one H x W, "
            f"got {tuple(mask_probs.shape)} and {tuple(target_masks.shape)}"
        )
    probs_flat = mask_probs.flatten(1)  # (Q, H*W)
    targets_flat = target_masks.flatten(1)  # (N, H*W)
    num_queries, num_pixels = probs_flat.shape
    intersection = probs_flat.new_zeros(num_queries, targets_flat.shape[0])  # (Q, N)
    target_area = probs_flat.new_zeros(targets_flat.shape[0])  # (N,)
    for start in range(0, num_pixels, pixel_chunk):
        chunk = targets_flat[:, start : start + pixel_chunk].to(probs_flat.dtype)  # (N, P)
        intersection += probs_flat[:, start : start + pixel_chunk] @ chunk.T  # (Q, N)
        target_area += chunk.sum(dim=1)
    pred_area = probs_flat.sum(dim=1)  # (Q,)
    union = target_area[None, :] + pred_area[:, None] - intersection  # (Q, N)
    return intersection / (union + IOU_EPS)


def max_over_instances(
    labels: torch.Tensor, ious: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group instances by class and keep, per query, the best-fitting instance's IoU.

    Args:
        labels: (N,) class of each instance.
        ious: (Q, N) IoU of each query with each instance's own binary mask.

    Returns:
        ``(classes, class_ious)``: (U,) the distinct classes (sorted) and (Q, U) the max over each
        class's instances.
    """
    classes, inverse = torch.unique(labels, return_inverse=True)  # (U,), (N,)
    index = inverse[None, :].expand_as(ious)  # (Q, N)
    class_ious = ious.new_zeros(ious.shape[0], classes.numel())  # (Q, U)
    class_ious = class_ious.scatter_reduce(1, index, ious, reduce="amax", include_self=False)
    return classes, class_ious


def _check_inputs(
    out_vocab_logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[dict]
) -> None:
    if out_vocab_logits.dim() != 3 or out_vocab_logits.shape[-1] < 2:
        raise ValueError(
            f"mask_aware_loss expects out_vocab_logits (B, Q, K+1) with K >= 1, "
            f"got {tuple(out_vocab_logits.shape)}"
        )
    if mask_logits.dim() != 4 or mask_logits.shape[:2] != out_vocab_logits.shape[:2]:
        raise ValueError(
            f"mask_aware_loss expects mask_logits (B, Q, h, w) with the B, Q of out_vocab_logits "
            f"{tuple(out_vocab_logits.shape)}, got {tuple(mask_logits.shape)}"
        )
    if len(targets) != out_vocab_logits.shape[0]:
        raise ValueError(
            f"mask_aware_loss expects one target dict per image (B = {out_vocab_logits.shape[0]}), "
            f"got {len(targets)}"
        )
    num_classes = out_vocab_logits.shape[-1] - 1
    for i, target in enumerate(targets):
        labels, masks = target["labels"], target["masks"]
        if labels.dim() != 1 or masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
            raise ValueError(
                f"targets[{i}] must hold labels (N,) and masks (N, H, W) with one N, got labels "
                f"{tuple(labels.shape)} and masks {tuple(masks.shape)}"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"targets[{i}]['labels'] must lie in [0, K) = [0, {num_classes}), got "
                f"{labels.tolist()}"
            )


def mask_aware_loss(
    out_vocab_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    targets: list[dict],
    *,
    best_instance: bool = False,
    pixel_chunk: int = 65536,
) -> torch.Tensor:
    """Mask-aware loss L_ma (design.md section 7): SmoothL1 of class scores against soft IoUs.

    Args:
        out_vocab_logits: (B, Q, K+1) out-of-vocabulary class logits; the last (void) column is
            dropped and the probabilities are a softmax over the K classes.
        mask_logits: (B, Q, h, w) mask logits. Only their detached sigmoid, bilinearly upsampled
            (align_corners False) to each image's target size, is used: no gradient reaches them.
        targets: B dicts with ``"labels"`` (N,) int64 classes and ``"masks"`` (N, H, W) binary
            masks (bool or float) padded to the input size; N may be 0.
        best_instance: False (semantic training): one entry per target segment, as given. True
            (the paper's COCO-Panoptic variant): segments are grouped by class and the IoU target
            of a query for a class is the max over that class's instances, each instance's mask
            taken alone (the other instances masked out); one entry per class present.
        pixel_chunk: pixels per IoU matrix product (memory bound, not a change in value).

    Returns:
        () the loss: SmoothL1 (beta 1) between ``probs[b, :, class]`` (Q,) and the IoU targets,
        computed in float32 and averaged over all entries x queries of the batch. Without any
        segment in the batch, a zero that still depends on ``out_vocab_logits``.
    """
    _check_inputs(out_vocab_logits, mask_logits, targets)
    num_classes = out_vocab_logits.shape[-1] - 1
    class_probs = out_vocab_logits[..., :num_classes].float().softmax(dim=-1)  # (B, Q, K)
    scores, iou_targets = [], []
    for b, target in enumerate(targets):
        labels = target["labels"].to(class_probs.device)  # (N,)
        if labels.numel() == 0:
            continue
        masks = target["masks"].to(class_probs.device)  # (N, H, W)
        with torch.no_grad():
            # Detached: the IoU is a regression target; the masks learn only from the set loss.
            mask_probs = mask_logits[b].detach().float().sigmoid()  # (Q, h, w)
            if mask_probs.shape[-2:] != masks.shape[-2:]:
                mask_probs = F.interpolate(
                    mask_probs[None], size=masks.shape[-2:], mode="bilinear", align_corners=False
                )[0]  # (Q, H, W)
            ious = soft_ious(mask_probs, masks, pixel_chunk=pixel_chunk)  # (Q, N)
            del mask_probs
            if best_instance:
                labels, ious = max_over_instances(labels, ious)  # (U,), (Q, U)
            low = ious.min(dim=0, keepdim=True).values  # (1, N)
            high = ious.max(dim=0, keepdim=True).values  # (1, N)
            iou_targets.append((ious - low) / (high - low + NORM_EPS))
        scores.append(class_probs[b][:, labels])  # (Q, N)
    if not scores:
        # Keep a gradient path so every DDP rank sees the same graph.
        return out_vocab_logits.sum() * 0.0
    return F.smooth_l1_loss(torch.cat(scores, dim=1), torch.cat(iou_targets, dim=1), beta=1.0)
