"""Multi-scale deformable attention (Deformable DETR) with a pure-PyTorch bilinear sampler.

Shapes: B batch, Q queries, N value tokens (all levels, flattened), C channels, M heads,
Dh = C / M channels per head, L levels, P sampling points per head and level, h_l x w_l level l.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of every level's value map, per head.

    A location ``(x, y)`` in [0, 1] is normalized to the map (0 and 1 are the outer pixel edges),
    i.e. at pixel coordinates ``(x * w_l - 0.5, y * h_l - 0.5)`` with pixel centres on integers:
    bilinear interpolation between the 4 surrounding pixels, zero outside the map. This is
    ``grid_sample(bilinear, padding_mode="zeros", align_corners=False)`` on ``2 * loc - 1``.

    The values go into a `padded_value_table` and `sample_padded_table` sums the samples with
    one ``embedding_bag``: no (B*M, Dh, Q, P) sample tensor is built (on CPU 5x faster than
    sampling with ``grid_sample`` and weighting afterwards). Differentiable in all three inputs.

    Args:
        value: (B, N, M, Dh) values, levels concatenated in the order of ``spatial_shapes``,
            each level flattened row-major (N = sum of h_l * w_l).
        spatial_shapes: the (h_l, w_l) of each of the L levels.
        sampling_locations: (B, Q, M, L, P, 2) normalized (x, y) locations.
        attention_weights: (B, Q, M, L, P) weights of the samples.

    Returns:
        (B, Q, M * Dh) attended values, heads concatenated.
    """
    _check_levels(value, spatial_shapes, sampling_locations.shape[3])
    sizes = torch.tensor(
        [[w, h] for h, w in spatial_shapes], dtype=sampling_locations.dtype, device=value.device
    )  # (L, 2) (w_l, h_l)
    pixels = sampling_locations * sizes[:, None, :] - 0.5  # (B, Q, M, L, P, 2)
    table = padded_value_table(value, spatial_shapes)
    pixels = pixels.movedim(-1, 3).contiguous()  # (B, Q, M, 2, L, P)
    return sample_padded_table(table, spatial_shapes, pixels, attention_weights)


def _check_levels(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], levels: int) -> None:
    """Raise a ValueError unless ``spatial_shapes`` describes ``levels`` maps of value's tokens."""
    num_tokens = value.shape[1]
    if num_tokens != sum(h * w for h, w in spatial_shapes) or levels != len(spatial_shapes):
        raise ValueError(
            f"ms_deform_attn: value has {num_tokens} tokens and the sampling locations {levels} "
            f"levels, but spatial_shapes {spatial_shapes} describe {len(spatial_shapes)} levels "
            f"of {sum(h * w for h, w in spatial_shapes)} tokens"
        )


# Each level's map sits in the value table with a zero border: one row and column before it and
# two after, so that every corner of a location clamped to [-1, size] is a cell of its own map.
PAD_BEFORE, PAD_AFTER = 1, 2


def _padded_cells(spatial_shapes: list[tuple[int, int]]) -> list[int]:
    """Table rows of each level's map with its border, per image and head."""
    pad = PAD_BEFORE + PAD_AFTER
    return [(h + pad) * (w + pad) for h, w in spatial_shapes]


def padded_value_table(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """The values of every head and level as rows of one table, each map inside a zero border.

    Args:
        value: (B, N, M, Dh) values, as in `ms_deform_attn`.
        spatial_shapes: the (h_l, w_l) of each of the L levels.

    Returns:
        (B*M*R, Dh) table, R the padded cells of all levels (`_padded_cells`); rows ordered
        (b, m, level, row, column) over the padded maps.
    """
    _check_levels(value, spatial_shapes, len(spatial_shapes))
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


def _column_constants(
    spatial_shapes: list[tuple[int, int]], num_heads: int, num_points: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample constants of one query, its samples ordered (m, l, p).

    Returns:
        (M, 2, L*P) upper bounds (w_l, h_l) of the clamp; (M, L*P) padded widths w_l + 3;
        (M, L*P) table row of pixel (0, 0) of the sample's head and level; all int64.
    """
    pad = PAD_BEFORE + PAD_AFTER
    cells = _padded_cells(spatial_shapes)
    level_starts = [sum(cells[:level]) for level in range(len(cells))]
    per_level = torch.tensor(
        [
            [w, h, w + pad, start + PAD_BEFORE * (w + pad) + PAD_BEFORE]
            for (h, w), start in zip(spatial_shapes, level_starts, strict=True)
        ],
        dtype=torch.int64,
        device=device,
    )  # (L, 4)
    columns = per_level[:, None, :].expand(-1, num_points, -1).reshape(-1, 4).t()  # (4, L*P)
    heads = torch.arange(num_heads, device=device)[:, None] * sum(cells)  # (M, 1)
    upper = columns[None, :2].expand(num_heads, -1, -1)  # (M, 2, L*P)
    return upper, columns[2].expand(num_heads, -1), columns[3] + heads


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
    over the table, with no (B*M, Dh, Q, P) sample tensor. Each query's work is laid out as
    rows of M*L*P samples, so that every step runs along long contiguous rows.

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
    device, head_dim = table.device, table.shape[1]
    rows_per_head = sum(_padded_cells(spatial_shapes))
    if table.shape[0] != batch * num_heads * rows_per_head:
        raise ValueError(
            f"sample_padded_table: table has {table.shape[0]} rows, expected B*M*R = "
            f"{batch}*{num_heads}*{rows_per_head} for spatial_shapes {spatial_shapes}"
        )
    index_dtype = torch.int32 if table.shape[0] < 2**31 else torch.int64  # int32: half the traffic
    upper, widths, origins = _column_constants(spatial_shapes, num_heads, num_points, device)
    per_level = num_levels * num_points

    pixels = pixels.reshape(batch, num_queries, num_heads, 2, per_level)
    upper = upper.to(pixels.dtype)
    clamped = torch.clamp(pixels, min=torch.full_like(upper, -1), max=upper)  # (B, Q, M, 2, LP)
    corner = clamped.floor()  # top-left neighbour, in [-1, size]
    frac = clamped.sub_(corner)  # in [0, 1): the weight of the far neighbour
    corner = corner.to(index_dtype)
    # table row of the top-left corner: its head and level's origin, then row and column
    top_left = corner[:, :, :, 1] * widths.to(index_dtype)  # (B, Q, M, L*P)
    top_left += corner[:, :, :, 0]
    top_left += origins.to(index_dtype)
    if batch > 1:
        images = torch.arange(batch, device=device, dtype=index_dtype) * (num_heads * rows_per_head)
        top_left += images[:, None, None, None]
    # the four corners (top-left, top-right, bottom-left, bottom-right) of each sample
    widths = widths[0].to(index_dtype)  # (L*P,), the same for every head
    steps = torch.stack((torch.zeros_like(widths), torch.ones_like(widths), widths, widths + 1))
    rows = top_left[:, :, :, None] + steps  # (B, Q, M, 4, L*P)

    near_far = torch.stack((1 - frac, frac), dim=3)  # (B, Q, M, 2 near/far, 2 x/y, L*P)
    weights = attention_weights.reshape(batch, num_queries, num_heads, 1, per_level)
    vertical = near_far[:, :, :, :, 1] * weights  # (B, Q, M, 2 top/bottom, L*P)
    horizontal = near_far[:, :, :, :, 0]  # (B, Q, M, 2 left/right, L*P)
    corner_weights = vertical[:, :, :, :, None] * horizontal[:, :, :, None]
    # (B, Q, M, 2, 2, L*P): the corners in the order of ``rows``

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


class MultiScaleDeformableAttention(nn.Module):
    """Each query attends to P learned points around its reference point on each of L levels.

    The value is projected before sampling and the result projected after; the L * P attention
    weights of a head are one softmax. Under autocast the value and output projections run in its
    dtype, while the sampling offsets, the attention logits and their softmax, the locations and
    the bilinear weights are computed in fp32 (bf16 offsets would move samples by up to 1/16
    pixel at 8 pixels; bf16 logits would shift the softmax's weights by ~1%).
    """

    def __init__(
        self, *, d_model: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(d_model, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(d_model, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: each head starts looking in its own direction, at 1..P steps.

        Head ``m`` points at angle ``2*pi*m/M``, its (cos, sin) scaled so the larger component is 1;
        point ``p`` (0-based) of every level starts at ``(p + 1)`` times that direction, in pixels
        of the level. Attention weights start uniform; projections are Xavier-uniform, bias 0.
        """
        device = self.sampling_offsets.bias.device
        angles = torch.arange(self.num_heads, dtype=torch.float32, device=device)
        angles = angles * (2.0 * math.pi / self.num_heads)  # (M,)
        directions = torch.stack((angles.cos(), angles.sin()), dim=-1)  # (M, 2)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32, device=device)  # (P,)
        grid = directions[:, None, None, :] * steps[None, None, :, None]  # (M, 1, P, 2)
        grid = grid.expand(-1, self.num_levels, -1, -1)  # (M, L, P, 2)
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))  # (M*L*P*2,)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value_input: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Attend from every query to the multi-scale value maps.

        Args:
            query: (B, Q, C) queries (content + position).
            reference_points: (B, Q, L, 2) normalized (x, y) reference point of each query on
                each level; offsets are added in units of that level's pixels.
            value_input: (B, N, C) un-projected values, levels flattened in ``spatial_shapes``
                order.
            spatial_shapes: the (h_l, w_l) of each of the L levels.

        Returns:
            (B, Q, C) attended features.
        """
        if len(spatial_shapes) != self.num_levels:
            raise ValueError(
                f"MultiScaleDeformableAttention was built for {self.num_levels} levels, "
                f"got spatial_shapes {spatial_shapes}"
            )
        table = self.value_table(value_input, spatial_shapes)
        return self.attend(query, reference_points, table, spatial_shapes)

    def value_table(
        self, value_input: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Projected values as a `padded_value_table`, to `attend` from any number of queries.

        Args:
            value_input: (B, N, C) un-projected values, levels flattened in ``spatial_shapes``
                order.

        Returns:
            (B*M*R, Dh) table.
        """
        batch, num_tokens, _ = value_input.shape
        value = self.value_proj(value_input)  # (B, N, C)
        value = value.view(batch, num_tokens, self.num_heads, self.d_model // self.num_heads)
        return padded_value_table(value, spatial_shapes)

    def attend(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        table: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """`forward` with the values already in a table (from `value_table`).

        Args:
            query, reference_points, spatial_shapes: as in `forward`.
            table: (B*M*R, Dh) from `value_table`.

        Returns:
            (B, Q, C) attended features.
        """
        batch, num_queries, channels = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        # Where to sample and with what weight: fp32 (or wider) whatever the autocast.
        dtype = torch.promote_types(query.dtype, torch.float32)
        with torch.autocast(device_type=query.device.type, enabled=False):
            offsets, logits = self._sampling_parameters(query.to(dtype))
        # softmax over a head's L*P logits, spelled out: 6x faster than softmax() on rows this short
        weights = (logits - logits.amax(dim=-1, keepdim=True)).exp_()
        weights = weights / weights.sum(dim=-1, keepdim=True)  # (B, Q, M, L*P)
        # Offsets are in pixels of their level: add them to the reference points in pixels,
        # ``(reference + offset / size) * size - 0.5`` (what `ms_deform_attn` samples) in one step.
        sizes = torch.tensor(
            [[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=offsets.device
        )  # (L, 2) (w_l, h_l)
        reference_pixels = (reference_points.to(dtype) * sizes - 0.5).transpose(
            2, 3
        )  # (B, Q, 2, L)
        pixels = offsets + reference_pixels[:, :, None, :, :, None]  # (B, Q, M, 2, L, P)
        weights = weights.view(batch, num_queries, heads, levels, points)
        output = sample_padded_table(table, spatial_shapes, pixels, weights)  # (B, Q, C)
        return self.output_proj(output)

    def _sampling_parameters(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling offsets (B, Q, M, 2, L, P) in pixels and attention logits (B, Q, M, L*P).

        Args:
            query: (B, Q, C) queries, in the dtype the offsets are wanted in.
        """
        batch, num_queries, channels = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        # The offsets' rows are reordered (m, l, p, x/y) -> (m, x/y, l, p): per head, x and y
        # come out as two contiguous runs, the layout the sampler works in.
        offset_weight = self.sampling_offsets.weight.view(heads, levels, points, 2, channels)
        offset_bias = self.sampling_offsets.bias.view(heads, levels, points, 2)
        offsets = F.linear(
            query,
            offset_weight.permute(0, 3, 1, 2, 4).reshape(-1, channels),
            offset_bias.permute(0, 3, 1, 2).reshape(-1),
        ).view(batch, num_queries, heads, 2, levels, points)  # (B, Q, M, 2, L, P)
        logits = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
        return offsets, logits
