"""Multi-head attention through scaled_dot_product_attention: nn.MultiheadAttention's math."""

import pytest
import torch
from torch import nn

from maft_plus.modeling.transformer_decoder.layers import multi_head_attention


@pytest.mark.parametrize("masked", [False, True])
def test_matches_nn_multihead_attention_with_the_mask_repeated_per_head(masked):
    batch, queries, tokens, channels, heads = 2, 5, 7, 16, 4
    attn = nn.MultiheadAttention(channels, heads, batch_first=True)
    nn.init.normal_(attn.in_proj_bias)
    nn.init.normal_(attn.out_proj.bias)
    query = torch.randn(batch, queries, channels)
    key, value = torch.randn(batch, tokens, channels), torch.randn(batch, tokens, channels)
    blocked = torch.rand(batch, 1, queries, tokens) < 0.5 if masked else None
    if masked:
        blocked[..., 0] = False  # no fully blocked row (the decoder never builds one)
        assert blocked.any()

    ours = multi_head_attention(attn, query, key, value, blocked=blocked)

    per_head = None if blocked is None else blocked.expand(-1, heads, -1, -1).flatten(0, 1)
    expected = attn(query, key, value, attn_mask=per_head, need_weights=False)[0]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    if masked:  # the mask matters: without it the result differs
        unmasked = multi_head_attention(attn, query, key, value)
        assert not torch.allclose(ours, unmasked, atol=1e-3)
