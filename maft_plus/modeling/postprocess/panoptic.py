"""Panoptic segmentation by the Mask2Former rule.

Shapes: Q queries, K classes (+1 the void column), H x W the output size.
"""

from collections.abc import Sequence

import torch

from .probabilities import check_is_thing, check_query_inputs


def panoptic_inference(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    is_thing: Sequence[bool],
    *,
    object_mask_threshold: float = 0.2,
    overlap_threshold: float = 0.7,
) -> tuple[torch.Tensor, list[dict]]:
    """Panoptic segmentation by the Mask2Former rule.

    Each query's score and label are the max / argmax over all K+1 columns. Queries labelled void or
    scoring at most ``object_mask_threshold`` are dropped. Every pixel goes to the kept query with
    the largest ``score * sigmoid(mask)``. A kept query becomes a segment of the pixels it wins with
    ``sigmoid(mask) >= 0.5`` when (pixels it wins) / (pixels with ``sigmoid(mask) >= 0.5``) is at
    least ``overlap_threshold``; segments of one stuff class merge into the first one's id.

    Args:
        class_probs: (Q, K+1) class probabilities, last column void.
        mask_logits: (Q, H, W) mask logits, already at the output size.
        is_thing: K flags, True for thing classes and False for stuff classes.
        object_mask_threshold: minimum query score (exclusive).
        overlap_threshold: minimum ratio of won pixels to mask pixels (inclusive).

    Returns:
        ``panoptic_seg``: (H, W) int32 segment ids, 0 where no segment;
        ``segments_info``: one ``{"id", "category_id", "isthing", "score"}`` dict per segment, ids
        from 1; ``score`` is the class probability of the query (of the first one, for merged
        stuff).
    """
    num_classes = check_query_inputs("panoptic_inference", class_probs, mask_logits)
    check_is_thing("panoptic_inference", is_thing, num_classes)
    height, width = mask_logits.shape[-2:]
    panoptic_seg = torch.zeros((height, width), dtype=torch.int32, device=mask_logits.device)
    segments_info: list[dict] = []

    scores, labels = class_probs.max(dim=-1)  # (Q,), (Q,)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)  # (Q,)
    if not bool(keep.any()):
        return panoptic_seg, segments_info

    kept_scores = scores[keep]  # (n,)
    kept_labels = labels[keep].tolist()
    kept_masks = mask_logits[keep].sigmoid()  # (n, H, W)
    prob_masks = kept_scores[:, None, None].to(kept_masks.dtype) * kept_masks  # (n, H, W)
    winner = prob_masks.argmax(dim=0)  # (H, W)

    stuff_ids: dict[int, int] = {}
    for index, category in enumerate(kept_labels):
        wins = winner == index  # (H, W)
        above_half = kept_masks[index] >= 0.5  # (H, W)
        segment = wins & above_half  # (H, W)
        mask_area = int(wins.sum())
        original_area = int(above_half.sum())
        if mask_area == 0 or original_area == 0 or not bool(segment.any()):
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        isthing = bool(is_thing[category])
        if not isthing and category in stuff_ids:
            panoptic_seg[segment] = stuff_ids[category]
            continue
        segment_id = len(segments_info) + 1
        if not isthing:
            stuff_ids[category] = segment_id
        panoptic_seg[segment] = segment_id
        segments_info.append(
            {
                "id": segment_id,
                "category_id": int(category),
                "isthing": isthing,
                "score": float(kept_scores[index]),  # the query's class probability
            }
        )
    return panoptic_seg, segments_info
