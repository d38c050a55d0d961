"""Tiny open_clip ConvNeXt CLIP models (random init only) for tests and the CPU quickstart.

Registers one timm trunk, ``maftp_tiny_convnext`` (a four-stage ConvNeXt with stage channels
16/32/64/128, one block per stage), and two open_clip model configs built on it, mirroring the two
released heads (``docs/design.md`` section 2):

- ``maftp-tiny-convnext-mlp``: ``visual.head.mlp`` (fc1 128->64 with bias, GELU, fc2 64->32
  without bias), like ``convnext_large_d_320``;
- ``maftp-tiny-convnext-linear``: ``visual.head.proj`` (128->32 without bias), like
  ``convnext_base_w_320``.

Both have a 2-layer, 32-wide text tower with the real tokenizer (vocabulary 49408, context 77), and
D = 32. Build them with ``open_clip.create_model(name, pretrained=None)``.
"""

from pathlib import Path

import open_clip
from timm.models import build_model_with_cfg, register_model
from timm.models.convnext import ConvNeXt

TINY_CLIP_NAMES = ("maftp-tiny-convnext-mlp", "maftp-tiny-convnext-linear")


@register_model
def maftp_tiny_convnext(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """A random-init ConvNeXt with stage channels 16/32/64/128 and one block per stage."""
    if pretrained:
        raise ValueError(
            "maftp_tiny_convnext is a random-init test model; it has no pretrained weights"
        )
    # timm's create_model passes pretrained_cfg=None for an unknown variant; describe ours instead.
    kwargs.pop("pretrained_cfg", None)
    return build_model_with_cfg(
        ConvNeXt,
        "maftp_tiny_convnext",
        pretrained=False,
        pretrained_cfg={"num_classes": 1000, "input_size": (3, 64, 64), "pool_size": (2, 2)},
        feature_cfg={"out_indices": (0, 1, 2, 3), "flatten_sequential": True},
        depths=(1, 1, 1, 1),
        dims=(16, 32, 64, 128),
        **kwargs,
    )


open_clip.add_model_config(Path(__file__).parent / "model_configs")
