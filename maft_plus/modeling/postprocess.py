"""Inference post-processing: class probabilities and semantic / panoptic / instance outputs.

Pure functions over one image's predictions (no parameters, no state); the meta-architecture calls
them per image. Outputs follow detectron2: a (K, height, width) score map for semantic segmentation
(or, with memory that does not grow with K, its per-pixel argmax and max),
``(panoptic_seg, segments_info)`` for panoptic and ``Instances`` for instance segmentation.

Shapes: B batch, Q queries, K classes (+1 the void column), h x w the predicted mask logits,
H x W the output size (the original image height, width), N kept instances.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

__all__ = [
    "classification_probs",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "semantic_labels",
]


def classification_probs(
    in_vocab_logits: torch.Tensor, out_vocab_logits: torch.Tensor
) -> torch.Tensor:
    """Class probabilities: void from the in-vocabulary classifier, classes from the other one.

    ``p_void = softmax(in_vocab_logits)[..., -1]`` and
    ``p_cls = softmax(out_vocab_logits[..., :K]) * (1 - p_void)``; the last out-of-vocabulary column
    is ignored.

    Args:
        in_vocab_logits: (B, Q, K+1) logits of the in-vocabulary classifier (last column void).
        out_vocab_logits: (B, Q, K+1) logits of the out-of-vocabulary (CLIP) classifier.

    Returns:
        (B, Q, K+1) probabilities ``[p_cls, p_void]``; every row sums to 1.
    """
    if in_vocab_logits.shape != out_vocab_logits.shape or in_vocab_logits.shape[-1] < 2:
        raise ValueError(
            "classification_probs expects in_vocab_logits and out_vocab_logits of the same shape "
            f"(B, Q, K+1) with K >= 1, got {tuple(in_vocab_logits.shape)} and "
            f"{tuple(out_vocab_logits.shape)}"
        )
    void_probs = in_vocab_logits.softmax(dim=-1)[..., -1:]  # (B, Q, 1)
    class_probs = out_vocab_logits[..., :-1].softmax(dim=-1) * (1.0 - void_probs)  # (B, Q, K)
    return torch.cat([class_probs, void_probs], dim=-1)  # (B, Q, K+1)


def _check_query_inputs(name: str, class_probs: torch.Tensor, mask_logits: torch.Tensor) -> int:
    """Check (Q, K+1) probabilities against (Q, h, w) mask logits; return K."""
    if class_probs.dim() != 2 or class_probs.shape[-1] < 2:
        raise ValueError(
            f"{name} expects class_probs of shape (Q, K+1) with K >= 1, "
            f"got {tuple(class_probs.shape)}"
        )
    if mask_logits.dim() != 3 or mask_logits.shape[0] != class_probs.shape[0]:
        raise ValueError(
            f"{name} expects mask_logits of shape (Q, h, w) with the Q of class_probs "
            f"{tuple(class_probs.shape)}, got {tuple(mask_logits.shape)}"
        )
    return class_probs.shape[-1] - 1


def _check_is_thing(name: str, is_thing: Sequence[bool], num_classes: int) -> None:
    if len(is_thing) != num_classes:
        raise ValueError(
            f"{name} expects is_thing with one entry per class (K = {num_classes}), "
            f"got {len(is_thing)} entries"
        )


# A chunk of scores holds at most this many values (64 MiB in float32) whatever the output size
# and the number of classes: a very large image goes through one class at a time.
MAX_CHUNK_ELEMENTS = 2**24
# A tile of pixels x all classes holds about this many scores (4 MiB in float32): it stays in the
# CPU cache between the product and the max (2x faster than 64 MiB tiles for 847 classes).
TILE_ELEMENTS = 2**20
# Masks are upsampled about this many values (Q x rows x W) at a time when the output is the
# input size, so that the upsampled probabilities also stay in the cache until they are used.
BAND_ELEMENTS = 2**20


def _check_semantic_sizes(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
) -> None:
    """Raise a ValueError naming the input unless the shapes and sizes fit together."""
    _check_query_inputs("semantic inference", class_probs, mask_logits)
    if image_size[0] > padded_size[0] or image_size[1] > padded_size[1]:
        raise ValueError(
            f"semantic inference expects image_size {tuple(image_size)} to fit inside "
            f"padded_size {tuple(padded_size)}"
        )


def _class_weights(class_probs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(K, Q) weights ``softmax(log(class_probs + 1e-8))[:, :K]`` transposed, in ``dtype``."""
    mask_cls = torch.log(class_probs + 1e-8)  # (Q, K+1)
    return mask_cls.softmax(dim=-1)[:, :-1].to(dtype).t()  # (K, Q)


def _semantic_masks(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the semantic scores: class weights and cropped mask probabilities.

    Returns:
        (K, Q) weights (`_class_weights`) and the (Q, image H, image W) sigmoids of the mask
        logits upsampled to ``padded_size`` and cropped to ``image_size``.
    """
    _check_semantic_sizes(class_probs, mask_logits, padded_size, image_size)
    if tuple(mask_logits.shape[-2:]) == tuple(padded_size):
        masks = mask_logits.sigmoid()  # (Q, padded H, padded W), a new tensor
    else:  # upsampled into a new tensor, which then takes its sigmoid in place
        masks = F.interpolate(
            mask_logits[None], size=tuple(padded_size), mode="bilinear", align_corners=False
        )[0].sigmoid_()  # (Q, padded H, padded W)
    # The sum over queries is per pixel, so cropping before combining gives the same values.
    masks = masks[:, : image_size[0], : image_size[1]].contiguous()  # (Q, image H, image W)
    return _class_weights(class_probs, masks.dtype), masks


def _resize_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """(size_out, size_in) weights of bilinear resizing (align_corners False) along one axis.

    Read off ``F.interpolate`` itself by resizing the identity, so they are its very weights.
    """
    eye = torch.eye(size_in, dtype=like.dtype, device=like.device)[None, :, None]  # (1, n, 1, n)
    resized = F.interpolate(eye, size=(1, size_out), mode="bilinear", align_corners=False)
    return resized[0, :, 0].t()  # (size_out, size_in)


def _resize_columns(maps: torch.Tensor, width: int) -> torch.Tensor:
    """Bilinear resizing (align_corners False) of (C, n, w) maps to (C, n, width), rows kept."""
    return F.interpolate(
        maps[None], size=(maps.shape[1], width), mode="bilinear", align_corners=False
    )[0]


def _row_spans(rows: torch.Tensor) -> tuple[list[int], list[int]]:
    """The input rows each output row of a `_resize_matrix` reads: [top, bottom) per row.

    Bilinear reads are monotone in the row, so a band of output rows reads the rows from its
    first row's top to its last row's bottom.
    """
    reads = rows.ne(0)  # (out, in)
    tops = reads.int().argmax(dim=1).tolist()  # first nonzero weight
    bottoms = (rows.shape[1] - reads.flip(1).int().argmax(dim=1)).tolist()  # last, exclusive
    return tops, bottoms


def _mask_rows(
    mask_logits: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int]
) -> Callable[[int, int], torch.Tensor]:
    """`_semantic_masks`' mask probabilities, any band of image rows at a time.

    A band is resized from only the mask rows under it, along the columns (`_resize_columns`)
    then along the rows (`_resize_matrix`'s weights): equal to ``F.interpolate`` of the whole map
    up to rounding, without ever holding the (Q, padded H, padded W) upsampling.

    Returns:
        ``rows(top, bottom)``: the (Q, bottom - top, image W) probabilities of image rows
        [top, bottom).
    """
    if tuple(mask_logits.shape[-2:]) == tuple(padded_size):  # already at the padded size
        return lambda top, bottom: mask_logits[:, top:bottom, : image_size[1]].sigmoid()
    resize = _resize_matrix(mask_logits.shape[-2], padded_size[0], mask_logits)  # (padded H, h)
    tops, bottoms = _row_spans(resize[: image_size[0]])

    def rows(top: int, bottom: int) -> torch.Tensor:
        first, last = tops[top], bottoms[bottom - 1]  # bilinear reads are monotone in the row
        wide = _resize_columns(mask_logits[:, first:last], padded_size[1])[:, :, : image_size[1]]
        return torch.matmul(resize[top:bottom, first:last], wide).sigmoid_()  # (Q, n, image W)

    return rows


# Side, in pixels, of the square tiles over which `_candidate_classes` bounds every class's score.
PRUNE_TILE = 16


def _tile_bounds(masks: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query minimum and maximum of the mask probabilities over each tile x tile square.

    Args:
        masks: (Q, h, w) mask probabilities.
        tile: side of the squares, from the top-left corner (the last row and column of squares
            may be cut short by the edges).

    Returns:
        (Q, ceil(h / tile), ceil(w / tile)) minima and maxima.
    """
    pool = dict(kernel_size=tile, stride=tile, ceil_mode=True)  # along the columns
    lows, highs = [], []
    for top in range(0, masks.shape[1], tile):
        rows = masks[:, top : top + tile]  # (Q, <= tile, w)
        highs.append(F.max_pool1d(rows.amax(dim=1), **pool))  # (Q, ceil(w / tile))
        lows.append(F.max_pool1d(rows.amin(dim=1).neg_(), **pool).neg_())
    return torch.stack(lows, dim=1), torch.stack(highs, dim=1)


# The relative rounding of a float32 product under torch.set_float32_matmul_precision: TF32
# ("high") and bfloat16 ("medium") products keep 10 and 7 bits of the inputs' mantissas.
MATMUL_PRECISION_EPS = {"high": 2.0**-10, "medium": 2.0**-7}


def _product_eps(dtype: torch.dtype) -> float:
    """The machine epsilon of matrix products of ``dtype`` at the current matmul precision."""
    eps = torch.finfo(dtype).eps
    if dtype == torch.float32:
        eps = max(eps, MATMUL_PRECISION_EPS.get(torch.get_float32_matmul_precision(), eps))
    return eps


def _candidate_classes(
    probs_t: torch.Tensor, masks: torch.Tensor, *, resized: bool
) -> torch.Tensor | None:
    """The classes that can be the argmax of ``probs_t @ masks`` at some pixel: exact pruning.

    The weights are non-negative, so over a tile of pixels a class's score lies between its
    weights times the per-query minima and times the per-query maxima of the mask probabilities
    (`_tile_bounds`). A class whose upper bound is below some class's lower bound wins no pixel
    of the tile. The margin, 8 (Q + 2) eps times the tile's largest bound, covers the rounding of
    the Q-term sums and of the resizing (bounds and scores alike): a pruned class stays below the
    winner after rounding, so it can neither win nor tie. With ``resized`` the scores are then
    resized bilinearly (convex combinations of 2 x 2 neighbouring pixels): each tile's bounds
    also cover its 8 neighbouring tiles, where the pixels such a combination reads lie.

    Args:
        probs_t: (K, Q) non-negative class weights (`_class_weights`).
        masks: (Q, h, w) mask probabilities.
        resized: whether the scores are bilinearly resized before the argmax.

    Returns:
        (k,) increasing indices of the classes that can win somewhere, or None when all can.
    """
    num_queries = probs_t.shape[1]
    low, high = _tile_bounds(masks, PRUNE_TILE)  # (Q, tile rows, tile columns) each
    if resized:
        high = F.max_pool2d(high, kernel_size=3, stride=1, padding=1)
        low = F.max_pool2d(low.neg_(), kernel_size=3, stride=1, padding=1).neg_()
    upper = probs_t @ high.flatten(1)  # (K, T)
    lower = probs_t @ low.flatten(1)  # (K, T)
    margin = 8 * (num_queries + 2) * _product_eps(masks.dtype) * upper.amax(dim=0)  # (T,)
    possible = (upper >= lower.amax(dim=0) - margin).any(dim=1)  # (K,); NaN scores: none
    classes = possible.nonzero()[:, 0]  # (k,)
    return None if len(classes) in (0, len(possible)) else classes


def _class_chunks(num_classes: int, chunk_size: int, output_size: tuple[int, int]) -> range:
    """Start indices of class chunks: at most ``chunk_size`` classes, ``MAX_CHUNK_ELEMENTS``."""
    if chunk_size < 1:
        raise ValueError(f"semantic inference expects chunk_size >= 1, got {chunk_size}")
    per_class = max(output_size[0] * output_size[1], 1)
    return range(0, num_classes, max(1, min(chunk_size, MAX_CHUNK_ELEMENTS // per_class)))


def _chunk_scores(
    probs_t: torch.Tensor, masks: torch.Tensor, output_size: tuple[int, int], out: torch.Tensor
) -> torch.Tensor:
    """Scores of a few classes at the output size: ``probs_t @ masks``, resized bilinearly.

    Args:
        probs_t: (k, Q) class weights of the chunk.
        masks: (Q, image H, image W) mask probabilities.
        output_size: (H, W).
        out: (k, H, W) contiguous buffer to write into.

    Returns:
        ``out``, holding the (k, H, W) scores.
    """
    num, image_hw = probs_t.shape[0], tuple(masks.shape[-2:])
    masks_flat = masks.view(masks.shape[0], -1)  # (Q, image H*W)
    if image_hw == tuple(output_size):
        return torch.mm(probs_t, masks_flat, out=out.view(num, -1)).view_as(out)
    scores = (probs_t @ masks_flat).view(num, *image_hw)  # (k, image H, image W)
    resized = F.interpolate(
        scores[None], size=tuple(output_size), mode="bilinear", align_corners=False
    )[0]  # (k, H, W)
    return out.copy_(resized)


def semantic_inference(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    *,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Per-class semantic scores ``sem_seg[k] = sum_q p[q, k] * sigmoid(mask_q)``, output size.

    ``p = softmax(log(class_probs + 1e-8))[:, :K]``. The mask logits are upsampled bilinearly
    (align_corners False) to ``padded_size``, passed through a sigmoid, combined with ``p``,
    cropped (top-left) to ``image_size`` and resized bilinearly (align_corners False) to
    ``output_size``. Classes are processed ``chunk_size`` at a time (fewer for very large outputs)
    so that no (K, padded H, padded W) intermediate is built; the result does not depend on the
    chunking. The (K, H, W) result itself grows with K: `semantic_labels` does not.

    Args:
        class_probs: (Q, K+1) class probabilities, last column void (see `classification_probs`).
        mask_logits: (Q, h, w) mask logits.
        padded_size: (height, width) of the padded network input.
        image_size: (height, width) of the network input before padding; at most ``padded_size``.
        output_size: (H, W) original image size.
        chunk_size: number of classes combined at once (memory bound only).

    Returns:
        (K, H, W) semantic scores in the dtype of ``mask_logits``; the prediction is the argmax.
    """
    probs_t, masks = _semantic_masks(class_probs, mask_logits, padded_size, image_size)
    num_classes = probs_t.shape[0]
    sem_seg = masks.new_empty((num_classes, *output_size))  # (K, H, W)
    chunks = _class_chunks(num_classes, chunk_size, output_size)
    for start in chunks:
        stop = min(start + chunks.step, num_classes)
        _chunk_scores(probs_t[start:stop], masks, output_size, out=sem_seg[start:stop])
    return sem_seg


def semantic_labels(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    *,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The argmax and max over classes of `semantic_inference`'s scores, without building them.

    Memory does not grow with K, and time hardly does: in each band of output rows only the
    classes that can win one of its pixels are scored (`_candidate_classes`, exact: typically a
    few of hundreds). The masks are upsampled only a band of rows at a time (`_mask_rows`, about
    ``BAND_ELEMENTS`` probabilities). When the output is the cropped input size, a band's
    candidates are scored over a tile of its pixels, reduced at once: a few (H, W) maps and
    cache-sized pieces. Otherwise (the scores are resized) each band of output rows goes through
    `_resized_labels`. Ties go to the lower class index, as with ``argmax``.

    Args:
        class_probs, mask_logits, padded_size, image_size, output_size, chunk_size: as in
            `semantic_inference`.

    Returns:
        (H, W) int64 labels (the argmax over classes) and (H, W) scores of those labels, in the
        dtype of ``mask_logits``.
    """
    _check_semantic_sizes(class_probs, mask_logits, padded_size, image_size)
    probs_t = _class_weights(class_probs, mask_logits.dtype)  # (K, Q)
    mask_rows = _mask_rows(mask_logits, padded_size, image_size)
    if tuple(image_size) != tuple(output_size):
        return _resized_labels(probs_t, mask_rows, image_size, output_size, chunk_size)
    num_queries = probs_t.shape[1]  # no resize: bands of rows, tiles of pixels
    best = mask_logits.new_empty(output_size)  # (H, W)
    labels = torch.empty(output_size, dtype=torch.int64, device=mask_logits.device)
    band_rows = max(1, BAND_ELEMENTS // (num_queries * output_size[1]))
    for first in range(0, output_size[0], band_rows):
        masks = mask_rows(first, min(first + band_rows, output_size[0]))  # (Q, rows, W)
        classes = _candidate_classes(probs_t, masks, resized=False)  # None: all of them
        weights = probs_t if classes is None else probs_t[classes]  # (k, Q)
        tile = max(1, min(TILE_ELEMENTS, MAX_CHUNK_ELEMENTS) // weights.shape[0])
        masks = masks.reshape(num_queries, -1)  # (Q, rows*W)
        band_best = best[first : first + band_rows].view(-1)  # (rows*W,)
        band_labels = labels[first : first + band_rows].view(-1)
        for start in range(0, masks.shape[1], tile):
            pixels = slice(start, start + tile)
            scores = weights @ masks[:, pixels]  # (k, tile): the max runs over the classes
            torch.max(scores, dim=0, out=(band_best[pixels], band_labels[pixels]))
        if classes is not None:  # positions among the candidates -> class indices
            band_labels.copy_(classes[band_labels])
    return labels, best


def _resized_labels(
    probs_t: torch.Tensor,
    mask_rows: Callable[[int, int], torch.Tensor],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`semantic_labels` when the scores are resized: a band of output rows at a time.

    A band's scores are made from only the mask rows it reads (`_row_spans`), for only the
    classes that can win there (`_candidate_classes`), at most ``chunk_size`` classes (and
    ``MAX_CHUNK_ELEMENTS`` scores) at a time: resized along the columns (`_resize_columns`) and
    along the rows by `_resize_matrix`'s weights (equal to resizing the whole map up to rounding),
    then reduced into the band's running maximum.

    Args:
        probs_t: (K, Q) class weights.
        mask_rows: `_mask_rows`' function of the mask probabilities at the image size.
        image_size: (image H, image W), the size of the scores before resizing.
        output_size: (H, W).
        chunk_size: as in `semantic_inference`.

    Returns:
        (H, W) int64 labels and (H, W) scores of those labels.
    """
    num_queries = probs_t.shape[1]
    height, width = image_size
    rows = _resize_matrix(height, output_size[0], probs_t)  # (H, image H)
    tops, bottoms = _row_spans(rows)
    best = probs_t.new_empty(output_size)  # (H, W)
    labels = torch.empty(output_size, dtype=torch.int64, device=probs_t.device)
    band_rows = max(1, BAND_ELEMENTS // (num_queries * output_size[1]))
    for first in range(0, output_size[0], band_rows):
        last = min(first + band_rows, output_size[0])
        top, bottom = tops[first], bottoms[last - 1]
        slab = mask_rows(top, bottom)  # (Q, n, image W): every mask row the band reads
        classes = _candidate_classes(probs_t, slab, resized=True)  # None: all of them
        weights = probs_t if classes is None else probs_t[classes]  # (k, Q)
        band_best, band_labels = best[first:last], labels[first:last]  # (rows, W) views
        chunks = _class_chunks(weights.shape[0], chunk_size, (bottom - top, output_size[1]))
        for start in chunks:
            scores = weights[start : start + chunks.step] @ slab.reshape(num_queries, -1)
            scores = _resize_columns(scores.view(-1, bottom - top, width), output_size[1])
            scores = torch.matmul(rows[first:last, top:bottom], scores)  # (c, rows, W)
            chunk_best, chunk_labels = scores.max(dim=0)  # (rows, W) each
            if start == 0:
                band_best.copy_(chunk_best)
                band_labels.copy_(chunk_labels)
                continue
            better = chunk_best > band_best  # strictly: a tie keeps the earlier (lower) class
            band_best.copy_(torch.where(better, chunk_best, band_best))
            band_labels.copy_(torch.where(better, chunk_labels + start, band_labels))
        if classes is not None:  # positions among the candidates -> class indices
            band_labels.copy_(classes[band_labels])
    return labels, best


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
    num_classes = _check_query_inputs("panoptic_inference", class_probs, mask_logits)
    _check_is_thing("panoptic_inference", is_thing, num_classes)
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
    num_classes = _check_query_inputs("instance_inference", class_probs, mask_logits)
    _check_is_thing("instance_inference", is_thing, num_classes)
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
