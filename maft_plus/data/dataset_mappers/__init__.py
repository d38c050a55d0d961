"""Training dataset mappers: dataset dicts -> image tensors and per-segment target masks."""

from .panoptic_mapper import PanopticTrainMapper, build_lsj_augmentations
from .semantic_mapper import SemanticTrainMapper

__all__ = ["PanopticTrainMapper", "SemanticTrainMapper", "build_lsj_augmentations"]
