"""Multi-scale deformable attention (Deformable DETR) with a pure-PyTorch bilinear sampler.

Shapes: B batch, Q queries, N value tokens (all levels, flattened), C channels, M heads,
Dh = C / M channels per head, L levels, P sampling points per head and level, h_l x w_l level l.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .padded_table import check_levels, padded_value_table, sample_padded_table


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
    check_levels(value, spatial_shapes, sampling_locations.shape[3])
    sizes = torch.tensor(
        [[w, h] for h, w in spatial_shapes], dtype=sampling_locations.dtype, device=value.device
    )  # (L, 2) (w_l, h_l)
    pixels = sampling_locations * sizes[:, None, :] - 0.5  # (B, Q, M, L, P, 2)
    table = padded_value_table(value, spatial_shapes)
    pixels = pixels.movedim(-1, 3).contiguous()  # (B, Q, M, 2, L, P)
    return sample_padded_table(table, spatial_shapes, pixels, attention_weights)


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
        reference = self.reference_pixels(reference_points, spatial_shapes)
        return self.attend(query, reference, table, spatial_shapes)

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

    def reference_pixels(
        self, reference_points: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Where each sample would be with a zero offset, in pixels of its level, fp32 or wider.

        ``reference * size - 0.5`` (the convention of `ms_deform_attn`) per level and axis,
        repeated for every head and point: the offsets are added to it as one contiguous block.
        In bf16 a normalized centre would be off by up to half a pixel at 80 px.

        Args:
            reference_points: (B, Q, L, 2) normalized (x, y) reference points.

        Returns:
            (B, Q, M, 2, L, P) reference pixels.
        """
        dtype = torch.promote_types(reference_points.dtype, torch.float32)
        sizes = torch.tensor(
            [[w, h] for h, w in spatial_shapes], dtype=dtype, device=reference_points.device
        )  # (L, 2) (w_l, h_l)
        pixels = (reference_points.to(dtype) * sizes - 0.5).transpose(2, 3)  # (B, Q, 2, L)
        batch, num_queries = pixels.shape[:2]
        return (
            pixels[:, :, None, :, :, None]
            .expand(batch, num_queries, self.num_heads, 2, self.num_levels, self.num_points)
            .contiguous()
        )

    def attend(
        self,
        query: torch.Tensor,
        reference_pixels: torch.Tensor,
        table: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        projection: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`forward` with the values already in a table and the reference points in pixels.

        Args:
            query, spatial_shapes: as in `forward`.
            reference_pixels: (B, Q, M, 2, L, P) from `reference_pixels`.
            table: (B*M*R, Dh) from `value_table`.
            projection: `sampling_projection()`, when the caller attends in several calls.

        Returns:
            (B, Q, C) attended features.
        """
        batch, num_queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        # Where to sample and with what weight: fp32 (or wider) whatever the autocast.
        dtype = torch.promote_types(query.dtype, torch.float32)
        with torch.autocast(device_type=query.device.type, enabled=False):
            weight, bias = self.sampling_projection() if projection is None else projection
            sampling = F.linear(query.to(dtype), weight.to(dtype), bias.to(dtype))
        num_offsets = heads * 2 * levels * points
        offsets = sampling[:, :, :num_offsets].view(batch, num_queries, heads, 2, levels, points)
        pixels = offsets + reference_pixels  # (B, Q, M, 2, L, P), offsets in pixels of the level
        logits = sampling[:, :, num_offsets:].view(batch, num_queries, heads, levels * points)
        weights = logits.softmax(dim=-1).view(batch, num_queries, heads, levels, points)
        output = sample_padded_table(table, spatial_shapes, pixels, weights)  # (B, Q, C)
        return self.output_proj(output)

    def sampling_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One (M*2*L*P + M*L*P, C) projection for the sampling offsets and attention logits.

        The offsets' rows are reordered (m, l, p, x/y) -> (m, x/y, l, p), so that per head the x
        and the y offsets come out as two contiguous runs (the layout the sampler works in), and
        the logits' rows follow: one matrix product gives both.
        """
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        offsets, logits = self.sampling_offsets, self.attention_weights
        offset_weight = offsets.weight.view(heads, levels, points, 2, self.d_model)
        offset_bias = offsets.bias.view(heads, levels, points, 2)
        weight = torch.cat(
            (offset_weight.permute(0, 3, 1, 2, 4).reshape(-1, self.d_model), logits.weight)
        )
        bias = torch.cat((offset_bias.permute(0, 3, 1, 2).reshape(-1), logits.bias))
        return weight, bias
