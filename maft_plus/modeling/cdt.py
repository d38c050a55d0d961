"""Content-Dependent Transfer (CDT): the text embeddings cross-attend to the image's CLIP tokens.

Shapes: B batch, S synonyms (S+1 text rows with the void row), D CLIP embedding dim, C channels of
the dense CLIP map F3, h x w its size, N = B*h*w tokens.
"""

from collections.abc import Callable

import torch
from torch import nn

from .position_encoding import sine_position_encoding

TOKEN_LAYOUTS = ("legacy", "per_pixel")
RESIDUALS = ("post_norm", "branch_norm")


def dense_to_tokens(
    dense: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    layout: str,
) -> torch.Tensor:
    """Map a dense CLIP feature map to D-dim image tokens with the (frozen) region head.

    Args:
        dense: (B, C, h, w) dense CLIP features (F3).
        head: maps (N, C, 1, 1) features to (N, D) embeddings.
        layout: ``"legacy"``, the released code: the contiguous (B, C, h, w) tensor is cut into
            B*h*w runs of C consecutive values (channels are NOT moved last), so a token mixes
            pixels and channels; the released weights were trained on this. ``"per_pixel"``:
            each token is one pixel's C-vector.

    Returns:
        (B, D, h, w) token map; in both layouts the head's N rows fill it in (B, h, w) order.
    """
    if layout not in TOKEN_LAYOUTS:
        raise ValueError(f"layout must be one of {TOKEN_LAYOUTS}, got {layout!r}")
    if dense.dim() != 4:
        raise ValueError(f"dense must be (B, C, h, w), got shape {tuple(dense.shape)}")
    b, c, h, w = dense.shape
    if layout == "legacy":
        rows = dense.contiguous().reshape(b * h * w, c, 1, 1)  # (N, C, 1, 1) runs of memory
    else:
        rows = dense.permute(0, 2, 3, 1).reshape(b * h * w, c, 1, 1)  # (N, C, 1, 1) pixels
    embeds = head(rows)  # (N, D)
    if embeds.dim() != 2 or embeds.shape[0] != b * h * w:
        raise ValueError(
            f"head must map ({b * h * w}, {c}, 1, 1) to ({b * h * w}, D), got {tuple(embeds.shape)}"
        )
    return embeds.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # (B, D, h, w)


class CDTLayer(nn.Module):
    """One CDT step: text rows attend to image tokens, then a Linear and a residual with LayerNorm.

    ``post_norm`` (semantic checkpoints): ``T_hat = norm(T + proj(attn))``.
    ``branch_norm`` (panoptic checkpoint): ``T_hat = T + norm(proj(attn))``, with ``proj``
    zero-initialized so that ``T_hat == T`` at init.
    """

    def __init__(self, *, embed_dim: int, num_heads: int, residual: str) -> None:
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
        self.residual = residual
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.proj = nn.Linear(embed_dim, embed_dim)  # the checkpoints' "MLP": no activation
        self.norm = nn.LayerNorm(embed_dim)
        if residual == "branch_norm":
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, text: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """text: (B, S+1, D) queries; keys, values: (B, h*w, D). Returns (B, S+1, D)."""
        attended = self.attn(text, keys, values, need_weights=False)[0]  # (B, S+1, D)
        update = self.proj(attended)  # (B, S+1, D)
        if self.residual == "post_norm":
            return self.norm(text + update)
        return text + self.norm(update)


class ContentDependentTransfer(nn.Module):
    """Condition the text embeddings on one image: T (B, S+1, D) -> T_hat (B, S+1, D).

    Each layer's queries are the text rows (no query position); keys are the image tokens plus a
    normalized sine position encoding (D/2 features per axis); values are the tokens. Layers are
    chained, and the output is not re-normalized.

    Args:
        embed_dim: D, a multiple of 4 (sine/cosine pairs on two axes) and of ``num_heads``.
        num_heads: attention heads.
        num_layers: stacked layers (released code 1, paper 2).
        residual: ``"post_norm"`` (semantic checkpoints) or ``"branch_norm"`` (panoptic
            checkpoint); see :class:`CDTLayer`.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int = 8,
        num_layers: int = 1,
        residual: str = "post_norm",
    ) -> None:
        super().__init__()
        if embed_dim < 4 or embed_dim % 4:
            raise ValueError(f"embed_dim must be a positive multiple of 4, got {embed_dim}")
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.embed_dim = embed_dim
        self.layers = nn.ModuleList(
            CDTLayer(embed_dim=embed_dim, num_heads=num_heads, residual=residual)
            for _ in range(num_layers)
        )

    def forward(self, text_embeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Transfer image content into the text embeddings.

        Args:
            text_embeds: (B, S+1, D) text embeddings (synonym rows and the void row).
            tokens: (B, D, h, w) image tokens, e.g. from :func:`dense_to_tokens`.

        Returns:
            (B, S+1, D) conditioned text embeddings T_hat.
        """
        d = self.embed_dim
        if text_embeds.dim() != 3 or text_embeds.shape[-1] != d:
            raise ValueError(
                f"text_embeds must be (B, S+1, {d}), got shape {tuple(text_embeds.shape)}"
            )
        if tokens.dim() != 4 or tokens.shape[1] != d:
            raise ValueError(f"tokens must be (B, {d}, h, w), got shape {tuple(tokens.shape)}")
        if tokens.shape[0] != text_embeds.shape[0]:
            raise ValueError(
                f"text_embeds and tokens disagree on the batch size: "
                f"{text_embeds.shape[0]} vs {tokens.shape[0]}"
            )
        b, _, h, w = tokens.shape
        pos = sine_position_encoding(
            b, h, w, d // 2, device=tokens.device, dtype=tokens.dtype
        )  # (B, D, h, w)
        values = tokens.flatten(2).transpose(1, 2)  # (B, h*w, D) row-major over (h, w)
        keys = (tokens + pos).flatten(2).transpose(1, 2)  # (B, h*w, D)
        text = text_embeds
        for layer in self.layers:
            text = layer(text, keys, values)  # (B, S+1, D)
        return text
