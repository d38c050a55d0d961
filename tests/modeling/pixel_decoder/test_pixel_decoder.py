"""The pixel decoder matches the official parameter layout, its shapes, fp32 and gradient flow."""

import json
from pathlib import Path

import pytest
import torch

from maft_plus.modeling.pixel_decoder import (
    DeformableEncoderLayer,
    EncoderSize,
    MAFTPlusPixelDecoder,
    deformable_encoder,
)
from maft_plus.modeling.position_encoding import sine_position_encoding

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
PREFIX = "sem_seg_head.pixel_decoder."
TINY_CHANNELS = {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def tiny_decoder() -> MAFTPlusPixelDecoder:
    return MAFTPlusPixelDecoder(
        in_channels=TINY_CHANNELS,
        encoder=EncoderSize(
            d_model=32, num_heads=4, num_points=2, dim_feedforward=64, num_layers=2
        ),
        mask_dim=24,
        num_groups=8,
    )


def tiny_features(batch: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    return {
        name: torch.randn(batch, channels, size // STRIDES[name], size // STRIDES[name])
        for name, channels in TINY_CHANNELS.items()
    }


@pytest.mark.parametrize(
    ("contract", "channels"),
    [
        ("maftp_l.json", {"res2": 192, "res3": 384, "res4": 768, "res5": 1536}),
        ("maftp_b.json", {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}),
    ],
)
def test_state_dict_matches_the_official_checkpoint(contract, channels):
    entries = json.loads((CONTRACTS / contract).read_text())
    expected = {
        name.removeprefix(PREFIX): tuple(shape)
        for name, shape in entries
        if name.startswith(PREFIX)
    }
    with torch.device("meta"):
        decoder = MAFTPlusPixelDecoder(in_channels=channels)
    state = {name: tuple(tensor.shape) for name, tensor in decoder.state_dict().items()}
    assert state == expected
    # every persistent tensor is a parameter (no buffers to explain)
    assert set(state) == {name for name, _ in decoder.named_parameters()}


def test_output_shapes_and_fp32_under_bf16_autocast():
    decoder = tiny_decoder()
    features = tiny_features()
    mask_features, multi_scale = decoder(features)
    assert mask_features.shape == (2, 24, 16, 16)
    assert [tuple(f.shape) for f in multi_scale] == [(2, 32, 2, 2), (2, 32, 4, 4), (2, 32, 8, 8)]

    bf16_features = {name: f.bfloat16() for name, f in features.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mask_auto, multi_scale_auto = decoder(bf16_features)
    assert mask_auto.dtype == torch.float32
    assert all(f.dtype == torch.float32 for f in multi_scale_auto)
    # same as an fp32 run on the same (bf16-rounded) inputs: nothing was computed in bf16
    reference = decoder({name: f.float() for name, f in bf16_features.items()})
    torch.testing.assert_close(mask_auto, reference[0])
    for auto, ref in zip(multi_scale_auto, reference[1], strict=True):
        torch.testing.assert_close(auto, ref)


def test_mask_features_follow_the_stride_8_encoder_output_and_res2():
    """Only res2 and the encoded stride-8 map reach the mask features, through layer_1."""
    decoder = tiny_decoder().eval()
    features = tiny_features(batch=1)
    mask_features, multi_scale = decoder(features)
    upsampled = torch.nn.functional.interpolate(
        multi_scale[-1], size=(16, 16), mode="bilinear", align_corners=False
    )
    fpn = decoder.layer_1(decoder.adapter_1(features["res2"]) + upsampled)
    torch.testing.assert_close(mask_features, decoder.mask_features(fpn))


def test_without_encoder_layers_each_level_comes_back_from_its_own_projection():
    """Levels go in as res5, res4, res3 and the encoder output is split back in that order."""
    decoder = MAFTPlusPixelDecoder(
        in_channels=TINY_CHANNELS, encoder=EncoderSize(d_model=32, num_layers=0), num_groups=8
    )
    features = tiny_features()
    _, multi_scale = decoder(features)
    for proj, name, out in zip(
        decoder.input_proj, ("res5", "res4", "res3"), multi_scale, strict=True
    ):
        torch.testing.assert_close(out, proj(features[name]))


def test_gradients_reach_every_parameter():
    decoder = tiny_decoder()
    # at init sampling_offsets and attention_weights have zero weights, so the query (and with it
    # the position term and level_embed) gets no gradient yet; move them off zero as training does
    for layer in decoder.transformer.encoder.layers:
        torch.nn.init.normal_(layer.self_attn.sampling_offsets.weight, std=0.01)
        torch.nn.init.normal_(layer.self_attn.attention_weights.weight, std=0.01)
    mask_features, multi_scale = decoder(tiny_features())
    # random weights: a plain sum of (group/layer)-normalized maps has no gradient
    loss = (mask_features * torch.randn_like(mask_features)).sum()
    loss = loss + sum((f * torch.randn_like(f)).sum() for f in multi_scale)
    loss.backward()
    no_grad = [
        name
        for name, p in decoder.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []


def test_bad_inputs_are_rejected_with_the_feature_name():
    with pytest.raises(ValueError, match="in_channels"):
        MAFTPlusPixelDecoder(in_channels={"res3": 8, "res4": 8, "res5": 8})
    with pytest.raises(ValueError, match=r"encoder\.num_levels must be 3"):
        MAFTPlusPixelDecoder(in_channels=TINY_CHANNELS, encoder=EncoderSize(num_levels=2))
    decoder = tiny_decoder()
    features = tiny_features()
    features["res4"] = torch.randn(2, 7, 4, 4)
    with pytest.raises(ValueError, match="res4"):
        decoder(features)
    del features["res4"]
    with pytest.raises(ValueError, match="res4"):
        decoder(features)


@pytest.mark.parametrize("query_chunk", [3, 1024])
def test_encoder_layer_is_post_norm_with_position_on_the_query_only(monkeypatch, query_chunk):
    """Whatever the number of tokens per chunk (3: uneven chunks; 1024: one chunk)."""
    monkeypatch.setattr(deformable_encoder, "QUERY_CHUNK", query_chunk)
    layer = DeformableEncoderLayer(
        EncoderSize(d_model=16, num_heads=2, num_levels=2, num_points=2, dim_feedforward=32)
    )
    torch.nn.init.normal_(layer.self_attn.sampling_offsets.weight, std=0.1)
    torch.nn.init.normal_(layer.self_attn.attention_weights.weight, std=0.1)
    spatial_shapes = [(2, 3), (1, 2)]
    src, pos = torch.randn(2, 8, 16), torch.randn(2, 8, 16)
    reference_points = torch.rand(2, 8, 2, 2)
    reference_pixels = layer.self_attn.reference_pixels(reference_points, spatial_shapes)
    out = layer(src, pos, reference_pixels, spatial_shapes)

    attended = layer.self_attn(src + pos, reference_points, src, spatial_shapes)
    hidden = layer.norm1(src + attended)
    ffn = layer.linear2(torch.relu(layer.linear1(hidden)))
    torch.testing.assert_close(out, layer.norm2(hidden + ffn))
    # the position term must not reach the values
    assert not torch.allclose(
        attended, layer.self_attn(src + pos, reference_points, src + pos, spatial_shapes)
    )


def test_encoder_position_term_is_sine_plus_level_embedding_coarsest_first():
    decoder = tiny_decoder()
    captured = {}

    def capture(module, args):
        captured["src"], captured["pos"], captured["shapes"] = args

    decoder.transformer.encoder.register_forward_pre_hook(capture)
    decoder(tiny_features())
    assert captured["shapes"] == [(2, 2), (4, 4), (8, 8)]  # res5, res4, res3
    expected = []
    for level, size in enumerate((2, 4, 8)):
        sine = sine_position_encoding(2, size, size, num_feats=16)  # (B, C, h, w)
        sine = sine.flatten(2).transpose(1, 2)  # (B, h*w, C)
        expected.append(sine + decoder.transformer.level_embed[level])
    torch.testing.assert_close(captured["pos"], torch.cat(expected, dim=1))
    assert captured["src"].shape == (2, 4 + 16 + 64, 32)
