"""The deformable sampler's value table and its bilinear sampler: one ``embedding_bag`` per call.

Every head's map of every level sits in one (rows, Dh) table, each map inside a zero border, so
that a bilinear sample is a weighted sum of 4 table rows and all samples of a query and head are
one bag: the whole attention is a single ``embedding_bag``, with no (B*M, Dh, Q, P) sample
tensor (on CPU 5x faster than ``grid_sample`` and weighting afterwards).

Shapes: B batch, Q queries, N value tokens (all levels, flattened), M heads, Dh channels per
head, L levels, P sampling points per head and level, h_l x w_l level l, R padded cells of all
levels per image and head.
"""

import torch
import torch.nn.functional as F

# Each level's map sits in the value table with a zero border: one row and column before it and
# two after, so that every corner of a location clamped to [-1, size] is a cell of its own map.
PAD_BEFORE, PAD_AFTER = 1, 2


def check_levels(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], levels: int) -> None:
    """Raise a ValueError unless ``spatial_shapes`` describes ``levels`` maps of value's tokens."""
    num_tokens = value.shape[1]
    if num_tokens != sum(h * w for h, w in spatial_shapes) or levels != len(spatial_shapes):
        raise ValueError(
            f"ms_deform_attn: value has {num_tokens} tokens and the sampling locations {levels} "
            f"levels, but spatial_shapes {spatial_shapes} describe {len(spatial_shapes)} levels "
            f"of {sum(h * w for h, w in spatial_shapes)} tokens"
        )


def _padded_cells(spatial_shapes: list[tuple[int, int]]) -> list[int]:
    """Table rows of each level's map with its border, per image and head."""
    pad = PAD_BEFORE + PAD_AFTER
    return [(h + pad) * (w + pad) for h, w in spatial_shapes]


def padded_value_table(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """The values of every head and level as rows of one table, each map inside a zero border.

    Args:
        value: (B, N, M, Dh) values, levels concatenated in the order of ``spatial_shapes``,
            each level flattened row-major (N = sum of h_l * w_l).
        spatial_shapes: the (h_l, w_l) of each of the L levels.

    Returns:
        (B*M*R, Dh) table, R the padded cells of all levels (`_padded_cells`); rows ordered
        (b, m, level, row, column) over the padded maps.
    """
    check_levels(value, spatial_shapes, len(spatial_shapes))
    batch, _, num_heads, head_dim = value.shape
    pad = PAD_BEFORE + PAD_AFTER
    cells = _padded_cells(spatial_shapes)
    table = value.new_zeros(batch, num_heads, sum(cells), head_dim)  # (B, M, R, Dh)
    first = start = 0
    for (height, width), count in zip(spatial_shapes, cells, strict=True):
        level = value[:, first : first + height * width].view(batch, height, width, num_heads, -1)
        padded = table[:, :, start : start + count].view(
            batch, num_heads, height + pad, width + pad, head_dim
        )
        padded[:, :, PAD_BEFORE : PAD_BEFORE + height, PAD_BEFORE : PAD_BEFORE + width] = (
            level.permute(0, 3, 1, 2, 4)
        )  # (B, M, h_l, w_l, Dh) into the inside of the border
        first += height * width
        start += count
    return table.view(-1, head_dim)


def _sample_constants(
    spatial_shapes: list[tuple[int, int]],
    num_heads: int,
    num_points: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample constants of one query, its samples ordered (m, l, p), in ``dtype``.

    Returns:
        (M, 2, L*P) upper bounds (w_l, h_l) of the clamp; (L*P,) padded widths w_l + 3, the
        same for every head; (M, L*P) table row of pixel (0, 0) of the sample's head and level.
    """
    pad = PAD_BEFORE + PAD_AFTER
    cells = _padded_cells(spatial_shapes)
    level_starts = [sum(cells[:level]) for level in range(len(cells))]
    per_level = torch.tensor(
        [
            [w, h, w + pad, start + PAD_BEFORE * (w + pad) + PAD_BEFORE]
            for (h, w), start in zip(spatial_shapes, level_starts, strict=True)
        ],
        dtype=dtype,
        device=device,
    )  # (L, 4)
    columns = per_level.repeat_interleave(num_points, dim=0).t()  # (4, L*P)
    heads = torch.arange(num_heads, dtype=dtype, device=device)[:, None] * sum(cells)  # (M, 1)
    upper = columns[None, :2].repeat(num_heads, 1, 1)  # (M, 2, L*P), not an expanded view
    return upper, columns[2], columns[3] + heads


def row_arithmetic_dtype(num_rows: int, dtype: torch.dtype) -> torch.dtype:
    """A floating dtype at least as wide as ``dtype`` in which every row number is an exact
    integer: fp32 (24-bit significand) below 2**24 rows, fp64 (53 bits) from there on."""
    if num_rows >= 2**24:
        return torch.float64
    return torch.promote_types(dtype, torch.float32)


def sample_padded_table(
    table: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    pixels: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of a `padded_value_table`, per query and head.

    A location is first clamped to ``[-1, size]`` per axis: one that was outside its map moves
    onto the zero border, where each of its four corners reads a zero or has weight zero, so the
    sum is that of zero padding. Every sample is one bag of 4 corner rows whose weights are the
    bilinear weights times the attention weight: the whole sum is a single ``embedding_bag``
    over the table. Each query's work is laid out as rows of M*L*P samples, so that every step
    runs along long contiguous rows, and the corners' table rows are computed in floating point
    (exact for integers below 2**24 in fp32, 2**53 in fp64) with one conversion at the end.

    Args:
        table: (B*M*R, Dh) from `padded_value_table`.
        spatial_shapes: the (h_l, w_l) of each of the L levels.
        pixels: (B, Q, M, 2, L, P) locations in pixels of their level, per head the x then the
            y coordinates; ``(j, i)`` is the centre of pixel (i, j).
        attention_weights: (B, Q, M, L, P) weights of the samples.

    Returns:
        (B, Q, M * Dh) attended values, heads concatenated, in the table's dtype. Locations and
        weights are computed in the dtype of ``pixels`` (fp32 under autocast); the final weights
        are rounded to the table's dtype for the bag sum, which accumulates in fp32.
    """
    batch, num_queries, num_heads, _, num_levels, num_points = pixels.shape
    if num_levels != len(spatial_shapes) or attention_weights.shape != (
        batch,
        num_queries,
        num_heads,
        num_levels,
        num_points,
    ):
        raise ValueError(
            f"sample_padded_table: pixels {tuple(pixels.shape)} and attention_weights "
            f"{tuple(attention_weights.shape)} do not describe (B, Q, M, L, P) samples of "
            f"{len(spatial_shapes)} levels"
        )
    device, head_dim, num_rows = table.device, table.shape[1], table.shape[0]
    rows_per_head = sum(_padded_cells(spatial_shapes))
    if num_rows != batch * num_heads * rows_per_head:
        raise ValueError(
            f"sample_padded_table: table has {num_rows} rows, expected B*M*R = "
            f"{batch}*{num_heads}*{rows_per_head} for spatial_shapes {spatial_shapes}"
        )
    index_dtype = torch.int32 if num_rows < 2**31 else torch.int64  # int32: half the traffic
    exact = row_arithmetic_dtype(num_rows, pixels.dtype)
    per_level = num_levels * num_points
    upper, widths, origins = _sample_constants(
        spatial_shapes, num_heads, num_points, pixels.dtype, device
    )

    pixels = pixels.reshape(batch, num_queries, num_heads, 2, per_level)
    clamped = torch.minimum(pixels.clamp_min(-1.0), upper)  # (B, Q, M, 2, L*P)
    corner = clamped.floor()  # top-left neighbour, in [-1, size]
    frac = clamped.sub_(corner)  # in [0, 1): the weight of the far neighbour
    corner = corner.to(exact)
    # table row of the top-left corner: its head and level's origin, then column and row
    top_left = torch.addcmul(
        corner[:, :, :, 0] + origins.to(exact), corner[:, :, :, 1], widths.to(exact)
    ).to(index_dtype)  # (B, Q, M, L*P)
    if batch > 1:
        images = torch.arange(batch, device=device, dtype=index_dtype) * (num_heads * rows_per_head)
        top_left += images[:, None, None, None]
    # the four corners (top-left, top-right, bottom-left, bottom-right) of each sample
    widths = widths.to(index_dtype)
    steps = torch.stack((torch.zeros_like(widths), torch.ones_like(widths), widths, widths + 1))
    rows = top_left[:, :, :, None, :] + steps  # (B, Q, M, 4, L*P)

    weights = attention_weights.reshape(batch, num_queries, num_heads, per_level)
    bottom = weights * frac[:, :, :, 1]  # the attention weight's share of the lower row
    top = weights - bottom
    top_right = top * frac[:, :, :, 0]
    bottom_right = bottom * frac[:, :, :, 0]
    corner_weights = torch.stack(
        (top - top_right, top_right, bottom - bottom_right, bottom_right), dim=3
    )  # (B, Q, M, 4, L*P): the corners in the order of ``rows``

    bag_size = 4 * per_level
    num_bags = batch * num_queries * num_heads
    offsets = torch.arange(0, num_bags * bag_size, bag_size, device=device, dtype=index_dtype)
    output = F.embedding_bag(
        rows.reshape(-1),  # (B*Q*M*4*L*P,) bag-major: (b, q, m) bags of their 4*L*P corners
        table,
        offsets,
        mode="sum",
        per_sample_weights=corner_weights.reshape(-1).to(table.dtype),  # a bf16 table: bf16
    )  # (B*Q*M, Dh)
    return output.view(batch, num_queries, num_heads * head_dim)  # (B, Q, M*Dh)
