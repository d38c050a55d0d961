"""A content-independent text adapter: the paper's "MLP instead of CDT" ablation (Table 4).

Shapes: B batch, S synonyms (S+1 rows with the void row), D CLIP embedding dim.

Every text row goes through the same two-layer MLP, whatever the image, with the residual and
LayerNorm of the matching CDT variant; comparing it with CDT isolates the effect of conditioning
the text on image content.
"""

import torch
from torch import nn

from .cdt import RESIDUALS


class TextMLPAdapter(nn.Module):
    """``T_hat = LN(T + MLP(T))`` ("post_norm") or ``T + LN(MLP(T))`` ("branch_norm")."""

    def __init__(self, *, embed_dim: int, residual: str = "post_norm") -> None:
        """
        Args:
            embed_dim: D.
            residual: as in ContentDependentTransfer; "branch_norm" zero-initializes the last
                Linear so that the adapter starts as the identity.
        """
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
        self.residual = residual
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.norm = nn.LayerNorm(embed_dim)
        if residual == "branch_norm":
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, text_embeds: torch.Tensor) -> torch.Tensor:
        """text_embeds: (B, S+1, D) -> (B, S+1, D), each row transformed on its own."""
        update = self.mlp(text_embeds)  # (B, S+1, D)
        if self.residual == "post_norm":
            return self.norm(text_embeds + update)
        return text_embeds + self.norm(update)
