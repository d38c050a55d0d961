"""Deformable-attention encoder over a multi-scale feature pyramid (post-norm, no padding mask).

Shapes: B batch, C channels (d_model), L levels, h_l x w_l level l, N = sum of h_l * w_l tokens.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .ms_deform_attn import MultiScaleDeformableAttention


@dataclass(frozen=True)
class EncoderSize:
    """The sizes of a deformable encoder, passed down whole to each layer; defaults as released."""

    d_model: int = 256  # C, the token width
    num_heads: int = 8  # M, attention heads
    num_levels: int = 3  # L, feature levels
    num_points: int = 4  # sampling points per head and level
    dim_feedforward: int = 1024  # hidden width of each layer's FFN
    num_layers: int = 6  # layers in the stack (a single layer ignores it)


RELEASED_ENCODER = EncoderSize()


def pixel_centre_reference_points(
    spatial_shapes: list[tuple[int, int]], *, device: torch.device | None = None
) -> torch.Tensor:
    """Normalized (x, y) centre of every pixel of every level, levels flattened in order.

    Pixel (i, j) of an h x w level is at ``((j + 0.5) / w, (i + 0.5) / h)``, computed as
    ``linspace(0.5, w - 0.5, w) / w`` and ``linspace(0.5, h - 0.5, h) / h``.

    Returns:
        (N, 2) reference points, rows in row-major order within each level.
    """
    points = []
    for height, width in spatial_shapes:
        ys = torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device) / height
        xs = torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
        points.append(torch.stack((grid_x, grid_y), dim=-1).flatten(0, 1))  # (h*w, 2)
    return torch.cat(points, dim=0)  # (N, 2)


# On CPU, tokens go through a layer this many at a time after the values are projected: the
# attention's and the feed-forward's intermediates stay in the cache (1.5x faster than all tokens
# at once at 640 x 640). Every step past the values is per token, so the result does not depend
# on it. Other devices take all tokens at once (fewer, larger kernels).
QUERY_CHUNK = 1024


class DeformableEncoderLayer(nn.Module):
    """``x = norm1(x + attn(x + pos, x))``, then ``x = norm2(x + linear2(relu(linear1(x))))``."""

    def __init__(self, size: EncoderSize = RELEASED_ENCODER) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(
            d_model=size.d_model,
            num_heads=size.num_heads,
            num_levels=size.num_levels,
            num_points=size.num_points,
        )
        self.norm1 = nn.LayerNorm(size.d_model)
        self.linear1 = nn.Linear(size.d_model, size.dim_feedforward)
        self.linear2 = nn.Linear(size.dim_feedforward, size.d_model)
        self.norm2 = nn.LayerNorm(size.d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_pixels: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """
        Args:
            src: (B, N, C) tokens of all levels.
            pos: (B, N, C) position term (sine encoding + level embedding).
            reference_pixels: (B, N, M, 2, L, P) from ``self_attn.reference_pixels`` (the same
                for every layer of a stack).
            spatial_shapes: the (h_l, w_l) of each level.

        Returns:
            (B, N, C) updated tokens.
        """
        table = self.self_attn.value_table(src, spatial_shapes)  # every token's values, once
        projection = self.self_attn.sampling_projection()  # once for all chunks
        outputs = []
        chunk = QUERY_CHUNK if src.device.type == "cpu" else src.shape[1]
        for start in range(0, src.shape[1], chunk):
            rows = slice(start, start + chunk)
            tokens = src[:, rows]  # (B, n, C)
            attended = self.self_attn.attend(
                tokens + pos[:, rows], reference_pixels[:, rows], table, spatial_shapes, projection
            )
            tokens = self.norm1(tokens + attended)
            hidden = self.linear1(tokens).relu_()  # (B, n, dim_feedforward)
            outputs.append(self.norm2(tokens + self.linear2(hidden)))
        return torch.cat(outputs, dim=1)


class DeformableEncoder(nn.Module):
    """A stack of deformable encoder layers; every token's reference point is its pixel centre."""

    def __init__(self, size: EncoderSize = RELEASED_ENCODER) -> None:
        super().__init__()
        self.num_levels = size.num_levels
        self.layers = nn.ModuleList(DeformableEncoderLayer(size) for _ in range(size.num_layers))

    def forward(
        self, src: torch.Tensor, pos: torch.Tensor, spatial_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """
        Args:
            src: (B, N, C) tokens, levels flattened in ``spatial_shapes`` order.
            pos: (B, N, C) position term.
            spatial_shapes: the (h_l, w_l) of each of the L levels.

        Returns:
            (B, N, C) encoded tokens.
        """
        if not self.layers:
            return src
        # no padding mask: a token's own normalized centre is its reference on every level
        reference_points = pixel_centre_reference_points(spatial_shapes, device=src.device)
        reference_points = reference_points[None, :, None, :].expand(
            src.shape[0], -1, len(spatial_shapes), -1
        )  # (B, N, L, 2)
        # fp32 or wider, once for every layer (all layers have the same heads, levels and points)
        reference_pixels = self.layers[0].self_attn.reference_pixels(
            reference_points.to(torch.promote_types(src.dtype, torch.float32)), spatial_shapes
        )  # (B, N, M, 2, L, P)
        for layer in self.layers:
            src = layer(src, pos, reference_pixels, spatial_shapes)
        return src


class MultiScaleDeformableEncoder(nn.Module):
    """Flattens L maps into one token sequence, encodes it, and splits it back into L maps.

    The position term of level l is its sine encoding plus the learned ``level_embed[l]``.
    """

    def __init__(self, size: EncoderSize = RELEASED_ENCODER) -> None:
        super().__init__()
        self.num_levels = size.num_levels
        self.encoder = DeformableEncoder(size)
        self.level_embed = nn.Parameter(torch.empty(size.num_levels, size.d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform for every matrix, then the attention's own init; level_embed N(0, 1)."""
        for param in self.encoder.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for module in self.encoder.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self, srcs: list[torch.Tensor], pos_embeds: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """
        Args:
            srcs: L maps (B, C, h_l, w_l), already projected to C channels.
            pos_embeds: L sine position encodings (B, C, h_l, w_l).

        Returns:
            L encoded maps (B, C, h_l, w_l), in the order of ``srcs``.
        """
        if len(srcs) != self.num_levels or len(pos_embeds) != self.num_levels:
            raise ValueError(
                f"MultiScaleDeformableEncoder expects {self.num_levels} maps and position "
                f"encodings, got {len(srcs)} and {len(pos_embeds)}"
            )
        spatial_shapes = [(src.shape[-2], src.shape[-1]) for src in srcs]
        tokens, positions = [], []
        for level, (src, pos) in enumerate(zip(srcs, pos_embeds, strict=True)):
            tokens.append(src.flatten(2).transpose(1, 2))  # (B, h_l*w_l, C)
            pos = pos.flatten(2).transpose(1, 2)  # (B, h_l*w_l, C)
            positions.append(pos + self.level_embed[level][None, None, :])
        src_flat = torch.cat(tokens, dim=1)  # (B, N, C)
        pos_flat = torch.cat(positions, dim=1)  # (B, N, C)
        memory = self.encoder(src_flat, pos_flat, spatial_shapes)  # (B, N, C)
        outputs = []
        for level_tokens, (height, width) in zip(
            memory.split([h * w for h, w in spatial_shapes], dim=1), spatial_shapes, strict=True
        ):
            level_map = level_tokens.transpose(1, 2)  # (B, C, h_l*w_l)
            outputs.append(level_map.reshape(level_map.shape[0], -1, height, width))  # (B, C, h, w)
        return outputs
