"""The tiny open_clip models mirror the released CLIP layouts at toy size and build offline."""

import open_clip
import pytest
import timm
import torch

from maft_plus.modeling.backbone.tiny_clip import TINY_CLIP_NAMES


def test_registered_with_open_clip_and_timm():
    assert set(TINY_CLIP_NAMES) <= set(open_clip.list_models())
    assert "maftp_tiny_convnext" in timm.list_models("maftp_*")


def test_trunk_features_follow_the_convnext_layout(tiny_clip):
    trunk = tiny_clip.visual.trunk
    assert [f["reduction"] for f in trunk.feature_info] == [4, 8, 16, 32]
    assert [f["num_chs"] for f in trunk.feature_info] == [16, 32, 64, 128]
    x = trunk.stem(torch.randn(2, 3, 64, 64))
    for stage, info in zip(trunk.stages, trunk.feature_info, strict=True):
        x = stage(x)
        assert x.shape == (2, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])


def test_heads_match_the_released_parameter_names():
    names_mlp = dict(open_clip.create_model("maftp-tiny-convnext-mlp").named_parameters())
    assert names_mlp["visual.head.mlp.fc1.weight"].shape == (64, 128)
    assert "visual.head.mlp.fc1.bias" in names_mlp  # like convnext_large_d_320
    assert "visual.head.mlp.fc2.bias" not in names_mlp
    names_linear = dict(open_clip.create_model("maftp-tiny-convnext-linear").named_parameters())
    assert names_linear["visual.head.proj.weight"].shape == (32, 128)  # like convnext_base_w_320
    assert "visual.head.proj.bias" not in names_linear


def test_image_and_text_towers_embed_to_d(tiny_clip, tiny_clip_name):
    tokens = open_clip.get_tokenizer(tiny_clip_name)(["a photo of a cat.", "There is a dog"])
    assert tokens.shape == (2, 77)
    with torch.no_grad():
        assert tiny_clip.encode_text(tokens).shape == (2, 32)
        assert tiny_clip.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 32)


def test_random_init_is_seeded():
    a = open_clip.create_model("maftp-tiny-convnext-mlp")
    torch.manual_seed(0)
    b = open_clip.create_model("maftp-tiny-convnext-mlp")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_tiny_trunk_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("maftp_tiny_convnext", pretrained=True)
