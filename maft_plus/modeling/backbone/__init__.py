"""CLIP ConvNeXt backbones: the open_clip model wrapped for detectron2, and tiny test models."""

from . import tiny_clip  # noqa: F401  (registers the tiny models with timm and open_clip)
from .clip_convnext import DENSE_FEATURE, CLIPConvNeXt, create_clip, run_trunk
from .teacher import FrozenCLIPTeacher

__all__ = ["CLIPConvNeXt", "DENSE_FEATURE", "FrozenCLIPTeacher", "create_clip", "run_trunk"]
