"""Per-pixel semantic labels (argmax and max of the semantic scores) in memory that does not grow
with the number of classes: bands of output rows, cache-sized tiles of pixels and exact pruning of
the classes that cannot win a tile.

Shapes: Q queries, K classes (+1 the void column), h x w the predicted mask logits, H x W the
output size (the original image height, width).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .semantic import MAX_CHUNK_ELEMENTS, check_semantic_sizes, class_chunks, class_weights
from .sizes import ImageSizes

# A tile of pixels x all classes holds about this many scores (4 MiB in float32): it stays in the
# CPU cache between the product and the max (2x faster than 64 MiB tiles for 847 classes).
TILE_ELEMENTS = 2**20
# Masks are upsampled about this many values (Q x rows x W) at a time when the output is the
# input size, so that the upsampled probabilities also stay in the cache until they are used.
BAND_ELEMENTS = 2**20


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
    """The mask probabilities of `semantic._semantic_masks`, any band of image rows at a time.

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
        probs_t: (K, Q) non-negative class weights (`class_weights`).
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


def semantic_labels(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    sizes: ImageSizes,
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
        class_probs, mask_logits, sizes, chunk_size: as in `semantic_inference`.

    Returns:
        (H, W) int64 labels (the argmax over classes) and (H, W) scores of those labels, in the
        dtype of ``mask_logits``.
    """
    check_semantic_sizes(class_probs, mask_logits, sizes)
    padded_size, image_size, output_size = sizes
    probs_t = class_weights(class_probs, mask_logits.dtype)  # (K, Q)
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
        chunks = class_chunks(weights.shape[0], chunk_size, (bottom - top, output_size[1]))
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
