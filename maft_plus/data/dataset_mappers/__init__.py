"""Dataset mappers: dataset dicts -> image tensors (and, for training, per-segment target masks)."""

from .panoptic_mapper import PanopticTrainMapper, build_lsj_augmentations
from .semantic_mapper import SemanticTrainMapper
from .test_mapper import SKIP_REASON, EvaluationMapper
from .train_mapper import TrainMapper

__all__ = [
    "SKIP_REASON",
    "EvaluationMapper",
    "PanopticTrainMapper",
    "SemanticTrainMapper",
    "TrainMapper",
    "build_lsj_augmentations",
]
