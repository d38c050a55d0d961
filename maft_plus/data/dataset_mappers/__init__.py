"""Dataset mappers: dataset dicts -> image tensors (and, for training, per-segment target masks)."""

from .evaluation_mapper import EvaluationMapper
from .panoptic_mapper import PanopticTrainMapper, build_lsj_augmentations
from .semantic_mapper import SemanticTrainMapper
from .train_mapper import TrainMapper

__all__ = [
    "EvaluationMapper",
    "PanopticTrainMapper",
    "SemanticTrainMapper",
    "TrainMapper",
    "build_lsj_augmentations",
]
