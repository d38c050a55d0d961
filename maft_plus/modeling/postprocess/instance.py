"""Instance segmentation from the best (query, thing class) pairs.

Shapes: Q queries, K classes (+1 the void column), H x W the output size, N kept instances.
"""

from collections.abc import Sequence

import torch
from detectron2.structures import Boxes, Instances

from .probabilities import check_is_thing, check_query_inputs


def _mask_bounding_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight (x0, y0, x1, y1) boxes of boolean masks, exclusive end; all zeros for an empty mask.

    Args:
        masks: (N, H, W) bool masks.

    Returns:
        (N, 4) float32 boxes on the device of ``masks``.
    """
    num, height, width = masks.shape
    boxes = torch.zeros((num, 4), dtype=torch.float32, device=masks.device)
    if num == 0:
        return boxes
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    x_idx = torch.arange(width, device=masks.device)  # (W,)
    y_idx = torch.arange(height, device=masks.device)  # (H,)
    x0 = torch.where(cols, x_idx, width).amin(dim=1)  # (N,)
    x1 = torch.where(cols, x_idx, -1).amax(dim=1) + 1  # (N,)
    y0 = torch.where(rows, y_idx, height).amin(dim=1)  # (N,)
    y1 = torch.where(rows, y_idx, -1).amax(dim=1) + 1  # (N,)
    nonempty = cols.any(dim=1)  # (N,)
    boxes[nonempty] = torch.stack([x0, y0, x1, y1], dim=1)[nonempty].float()  # (n, 4)
    return boxes


def instance_inference(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    is_thing: Sequence[bool],
    *,
    top_k: int = 100,
) -> Instances:
    """Instance segmentation from the ``top_k`` best (query, thing class) pairs.

    The top ``top_k`` (capped at Q*K) entries of the (Q, K) class probabilities are taken in
    descending order, pairs of stuff classes are then dropped. Masks are ``logit > 0``; the score is
    the class probability times the mean mask probability inside the mask,
    ``sum(sigmoid(m) * mask) / (sum(mask) + 1e-6)``.

    Args:
        class_probs: (Q, K+1) class probabilities, last column void (ignored).
        mask_logits: (Q, H, W) mask logits, already at the output size.
        is_thing: K flags, True for thing classes.
        top_k: number of (query, class) pairs considered before the thing filter.

    Returns:
        ``Instances`` of size (H, W) with ``pred_masks`` (N, H, W) bool, ``pred_boxes`` (N boxes of
        the masks, XYXY, empty mask -> zeros), ``scores`` (N,) and ``pred_classes`` (N,) int64.
    """
    num_classes = check_query_inputs("instance_inference", class_probs, mask_logits)
    check_is_thing("instance_inference", is_thing, num_classes)
    if top_k < 1:
        raise ValueError(f"instance_inference expects top_k >= 1, got {top_k}")
    num_queries = class_probs.shape[0]
    height, width = mask_logits.shape[-2:]

    scores = class_probs[:, :num_classes]  # (Q, K)
    num_pairs = min(top_k, num_queries * num_classes)
    top_scores, top_index = scores.flatten().topk(num_pairs, sorted=True)  # (k,), (k,)
    query_index = top_index // num_classes  # (k,)
    classes = top_index % num_classes  # (k,)

    thing_flags = torch.as_tensor(list(is_thing), dtype=torch.bool, device=class_probs.device)
    is_thing_pair = thing_flags[classes]  # (k,)
    top_scores = top_scores[is_thing_pair]  # (N,)
    query_index = query_index[is_thing_pair]  # (N,)
    classes = classes[is_thing_pair]  # (N,)

    logits = mask_logits[query_index]  # (N, H, W)
    masks = logits > 0  # (N, H, W)
    inside = masks.to(logits.dtype)  # (N, H, W)
    inside_prob = (logits.sigmoid() * inside).flatten(1).sum(dim=1)  # (N,)
    mask_scores = inside_prob / (inside.flatten(1).sum(dim=1) + 1e-6)  # (N,)

    result = Instances((int(height), int(width)))
    result.pred_masks = masks
    result.pred_boxes = Boxes(_mask_bounding_boxes(masks))
    result.scores = top_scores * mask_scores.to(top_scores.dtype)
    result.pred_classes = classes.to(torch.int64)
    return result
