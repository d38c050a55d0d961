"""Sine position encoding of a 2-D grid, as used by the pixel decoder, transformer decoder and CDT.

Shapes: B batch, F features per axis, h x w the grid.
"""

import math

import torch


def sine_position_encoding(
    batch_size: int,
    height: int,
    width: int,
    num_feats: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalized sine encoding of every cell of a (height, width) grid.

    Each axis is numbered 1..n and normalized to (0, 2*pi] as ``i / (n + 1e-6) * 2*pi`` (no
    half-cell offset); feature ``j`` of an axis divides it by
    ``temperature ** (2 * (j // 2) / num_feats)`` and takes the sine for even ``j``, the cosine for
    odd ``j``. Channels are ``[y features, x features]``.

    Returns:
        (B, 2F, h, w) encoding, identical for every image of the batch.
    """
    if num_feats % 2:
        raise ValueError(f"num_feats must be even for sine/cosine pairs, got {num_feats}")
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32) / (height + eps) * scale
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32) / (width + eps) * scale
    j = torch.arange(num_feats, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(j, 2, rounding_mode="floor") / num_feats)  # (F,)

    def encode(axis: torch.Tensor) -> torch.Tensor:
        angles = axis[:, None] / dim_t  # (n, F)
        # interleave: sin of even features, cos of odd features
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(
            1
        )  # (n, F)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)  # (h, w, F)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)  # (h, w, F)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)  # (2F, h, w)
    return pos.to(dtype).unsqueeze(0).expand(batch_size, -1, -1, -1)  # (B, 2F, h, w)
