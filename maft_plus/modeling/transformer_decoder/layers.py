"""Building blocks of the masked-attention decoder: post-norm attention and FFN sublayers, an MLP.

Shapes: B batch, Q queries, N memory tokens (h*w of one level), C channels, M heads.

Every sublayer is post-norm with no dropout: ``x = norm(x + sublayer(x))``. Sequences are
batch-first; ``nn.MultiheadAttention`` has the same parameters either way, so official checkpoints
load as they are.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _xavier_init(module: nn.Module) -> None:
    """Xavier-uniform for every matrix of ``module`` (biases and norms keep their defaults)."""
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)


def multi_head_attention(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    blocked: torch.Tensor | None = None,
) -> torch.Tensor:
    """What ``attn(query, key, value, attn_mask=..., need_weights=False)[0]`` computes, with
    ``attn``'s own parameters, through ``F.scaled_dot_product_attention``.

    A mask shared by the heads is broadcast to them rather than repeated per head, which makes
    masked cross-attention to a large level 3x faster on CPU.

    Args:
        attn: a batch-first ``nn.MultiheadAttention`` with one packed input projection; only its
            parameters are used.
        query: (B, Q, C); key and value: (B, N, C).
        blocked: optional (B, 1, Q, N) bool, True where a query may not attend (all heads).

    Returns:
        (B, Q, C) attended values.
    """
    batch, num_queries, channels = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split_heads(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, weight, bias)  # (B, L, C)
        return x.view(batch, x.shape[1], heads, channels // heads).transpose(1, 2)  # (B, M, L, Dh)

    q, k, v = split_heads(query, w_q, b_q), split_heads(key, w_k, b_k), split_heads(value, w_v, b_v)
    mask = None
    if blocked is not None:  # additive: -inf where blocked, in the dtype of the scores
        mask = torch.zeros(blocked.shape, dtype=q.dtype, device=q.device)
        mask.masked_fill_(blocked, float("-inf"))  # (B, 1, Q, N)
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, M, Q, Dh)
    return attn.out_proj(attended.transpose(1, 2).reshape(batch, num_queries, channels))


class CrossAttentionLayer(nn.Module):
    """Queries attend to one level of the pixel-decoder memory, optionally masked."""

    def __init__(self, *, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(
            d_model, num_heads, dropout=0.0, batch_first=True
        )
        self.norm = nn.LayerNorm(d_model)
        _xavier_init(self)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``norm(x + attn(q=x+query_pos, k=memory+pos, v=memory, attn_mask))``.

        Args:
            x: (B, Q, C) query features.
            memory: (B, N, C) memory tokens of one level (level embedding already added).
            pos: (B, N, C) position encoding of the memory tokens.
            query_pos: (B, Q, C) or (Q, C) learned query positions.
            attn_mask: (B, 1, Q, N) bool, True where a query may not attend (every head); None
                attends everywhere.

        Returns:
            (B, Q, C) updated query features.
        """
        attended = multi_head_attention(
            self.multihead_attn, x + query_pos, memory + pos, memory, blocked=attn_mask
        )
        return self.norm(x + attended)


class SelfAttentionLayer(nn.Module):
    """Queries attend to each other."""

    def __init__(self, *, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        _xavier_init(self)

    def forward(self, x: torch.Tensor, *, query_pos: torch.Tensor) -> torch.Tensor:
        """``norm(x + attn(q=k=x+query_pos, v=x))``.

        Args:
            x: (B, Q, C) query features.
            query_pos: (B, Q, C) or (Q, C) learned query positions.

        Returns:
            (B, Q, C) updated query features.
        """
        q = k = x + query_pos
        attended = multi_head_attention(self.self_attn, q, k, x)
        return self.norm(x + attended)


class FFNLayer(nn.Module):
    """Position-wise feed-forward sublayer with a ReLU."""

    def __init__(self, *, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        _xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(x + linear2(relu(linear1(x))))`` on (B, Q, C) features; returns (B, Q, C)."""
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """``num_layers`` Linear layers (``self.layers``); ReLU between them, none after the last."""

    def __init__(
        self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs num_layers >= 1, got {num_layers}")
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out) for d_in, d_out in zip(dims_in, dims_out, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
