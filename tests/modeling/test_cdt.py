"""Content-Dependent Transfer and the dense-map-to-token layouts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maft_plus.modeling.cdt import ContentDependentTransfer, dense_to_tokens
from maft_plus.modeling.position_encoding import sine_position_encoding


def flatten_head(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, 1) -> (N, C): an identity-like head."""
    return x.flatten(1)


def hand_made_map() -> torch.Tensor:
    # channel 0 = [[0, 1], [2, 3]], channel 1 = [[4, 5], [6, 7]]
    return torch.arange(8.0).reshape(1, 2, 2, 2)  # (B=1, C=2, h=2, w=2)


def test_legacy_layout_is_the_released_reshape():
    tokens = dense_to_tokens(hand_made_map(), flatten_head, "legacy")
    # memory runs of C=2 values: [0,1], [2,3], [4,5], [6,7] fill pixels (0,0), (0,1), (1,0), (1,1)
    expected = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[1.0, 3.0], [5.0, 7.0]]]])  # (1, 2, 2, 2)
    assert torch.equal(tokens, expected)


def test_per_pixel_layout_keeps_each_pixel():
    dense = hand_made_map()
    tokens = dense_to_tokens(dense, flatten_head, "per_pixel")
    assert torch.equal(tokens, dense)  # pixel (0,0) is [0, 4], ...
    assert not torch.equal(tokens, dense_to_tokens(dense, flatten_head, "legacy"))


def test_per_pixel_is_the_head_on_every_pixel():
    dense = torch.randn(2, 6, 3, 4)  # (B, C, h, w)
    linear = nn.Linear(6, 5)

    def head(x):
        return linear(x.flatten(1))

    tokens = dense_to_tokens(dense, head, "per_pixel")
    assert tokens.shape == (2, 5, 3, 4)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                torch.testing.assert_close(tokens[b, :, i, j], linear(dense[b, :, i, j]))
    legacy = dense_to_tokens(dense, head, "legacy")
    runs = dense.reshape(-1, 6)  # (B*h*w, C): consecutive memory
    torch.testing.assert_close(legacy[1, :, 2, 3], linear(runs[-1]))
    torch.testing.assert_close(legacy[0, :, 0, 1], linear(runs[1]))


def test_head_gets_n_c_1_1():
    shapes = []

    def head(x):
        shapes.append(tuple(x.shape))
        return x.flatten(1)

    dense_to_tokens(torch.randn(2, 3, 4, 5), head, "legacy")
    assert shapes == [(40, 3, 1, 1)]


def test_dense_to_tokens_errors():
    with pytest.raises(ValueError, match="'channels_last'"):
        dense_to_tokens(hand_made_map(), flatten_head, "channels_last")
    with pytest.raises(ValueError, match="\\(B, C, h, w\\)"):
        dense_to_tokens(torch.zeros(2, 2, 2), flatten_head, "legacy")
    with pytest.raises(ValueError, match="head must map"):
        dense_to_tokens(hand_made_map(), lambda x: x, "legacy")


@pytest.mark.parametrize("residual", ["post_norm", "branch_norm"])
def test_output_shape(residual):
    cdt = ContentDependentTransfer(embed_dim=32, residual=residual)
    out = cdt(torch.randn(2, 5, 32), torch.randn(2, 32, 3, 4))
    assert out.shape == (2, 5, 32)


def test_branch_norm_is_identity_at_init():
    cdt = ContentDependentTransfer(embed_dim=32, residual="branch_norm")
    text = torch.randn(2, 5, 32)
    assert torch.equal(cdt(text, torch.randn(2, 32, 3, 4)), text)
    assert torch.count_nonzero(cdt.layers[0].proj.weight) == 0


def test_post_norm_rows_are_layer_normed():
    cdt = ContentDependentTransfer(embed_dim=32, residual="post_norm")
    out = cdt(torch.randn(2, 5, 32) * 3 + 1, torch.randn(2, 32, 3, 4))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_post_norm_matches_hand_computation():
    cdt = ContentDependentTransfer(embed_dim=32, num_heads=4).eval()
    layer = cdt.layers[0]
    text, tokens = torch.randn(1, 3, 32), torch.randn(1, 32, 2, 3)
    keys = (tokens + sine_position_encoding(1, 2, 3, 16)).flatten(2).transpose(1, 2)  # (1, 6, 32)
    values = tokens.flatten(2).transpose(1, 2)  # (1, 6, 32)
    # single-head-per-chunk attention written out from the packed weights
    wq, wk, wv = layer.attn.in_proj_weight.chunk(3)
    bq, bk, bv = layer.attn.in_proj_bias.chunk(3)
    q = (text @ wq.T + bq).reshape(3, 4, 8).transpose(0, 1)  # (heads, S+1, 8)
    k = (keys @ wk.T + bk).reshape(6, 4, 8).transpose(0, 1)  # (heads, h*w, 8)
    v = (values @ wv.T + bv).reshape(6, 4, 8).transpose(0, 1)  # (heads, h*w, 8)
    attn = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1) @ v  # (heads, S+1, 8)
    attn = layer.attn.out_proj(attn.transpose(0, 1).reshape(1, 3, 32))  # (1, S+1, 32)
    expected = F.layer_norm(text + layer.proj(attn), (32,))
    torch.testing.assert_close(cdt(text, tokens), expected, atol=1e-5, rtol=1e-5)


def test_two_layers_are_chained():
    cdt = ContentDependentTransfer(embed_dim=32, num_layers=2)
    assert len(cdt.layers) == 2
    text, tokens = torch.randn(1, 4, 32), torch.randn(1, 32, 2, 2)
    keys = (tokens + sine_position_encoding(1, 2, 2, 16)).flatten(2).transpose(1, 2)  # (1, 4, 32)
    values = tokens.flatten(2).transpose(1, 2)  # (1, 4, 32)
    expected = cdt.layers[1](cdt.layers[0](text, keys, values), keys, values)
    torch.testing.assert_close(cdt(text, tokens), expected)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_state_dict_keys(num_layers):
    cdt = ContentDependentTransfer(embed_dim=32, num_layers=num_layers)
    names = (
        "attn.in_proj_weight",
        "attn.in_proj_bias",
        "attn.out_proj.weight",
        "attn.out_proj.bias",
        "proj.weight",
        "proj.bias",
        "norm.weight",
        "norm.bias",
    )
    expected = {f"layers.{i}.{name}" for i in range(num_layers) for name in names}
    assert set(cdt.state_dict()) == expected
    assert cdt.state_dict()["layers.0.attn.in_proj_weight"].shape == (96, 32)


@pytest.mark.parametrize("residual", ["post_norm", "branch_norm"])
def test_permuting_text_rows_permutes_the_output(residual):
    cdt = ContentDependentTransfer(embed_dim=32, residual=residual, num_layers=2)
    if residual == "branch_norm":  # move away from the identity init so the test can fail
        for layer in cdt.layers:
            nn.init.normal_(layer.proj.weight)
    text, tokens = torch.randn(2, 6, 32), torch.randn(2, 32, 3, 3)
    perm = torch.randperm(6)
    out = cdt(text, tokens)
    assert not torch.allclose(out, text)
    torch.testing.assert_close(cdt(text[:, perm], tokens), out[:, perm])


def test_keys_carry_position():
    # the same token at every position: only the position encoding tells the keys apart
    cdt = ContentDependentTransfer(embed_dim=32)
    tokens = torch.randn(1, 32, 1, 1).expand(1, 32, 3, 3).clone()
    bumped = tokens.clone()
    bumped[..., 0, 0] = tokens[..., 0, 0] + 1
    text = torch.randn(1, 2, 32)
    assert not torch.allclose(cdt(text, bumped), cdt(text, bumped.flip(-1)))


def test_gradients_reach_text_and_tokens():
    cdt = ContentDependentTransfer(embed_dim=32)
    text = torch.randn(1, 3, 32, requires_grad=True)
    tokens = torch.randn(1, 32, 2, 2, requires_grad=True)
    cdt(text, tokens).square().sum().backward()
    assert text.grad.abs().sum() > 0 and tokens.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("text_shape", "token_shape", "message"),
    [
        ((1, 3, 16), (1, 32, 2, 2), "text_embeds must be \\(B, S\\+1, 32\\)"),
        ((3, 32), (1, 32, 2, 2), "text_embeds must be"),
        ((1, 3, 32), (1, 16, 2, 2), "tokens must be \\(B, 32, h, w\\)"),
        ((2, 3, 32), (1, 32, 2, 2), "batch size: 2 vs 1"),
    ],
)
def test_shape_errors(text_shape, token_shape, message):
    cdt = ContentDependentTransfer(embed_dim=32)
    with pytest.raises(ValueError, match=message):
        cdt(torch.randn(text_shape), torch.randn(token_shape))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embed_dim": 30}, "multiple of 4"),
        ({"embed_dim": 32, "num_heads": 3}, "not divisible by num_heads 3"),
        ({"embed_dim": 32, "num_layers": 0}, "num_layers"),
        ({"embed_dim": 32, "residual": "pre_norm"}, "'pre_norm'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContentDependentTransfer(**kwargs)
