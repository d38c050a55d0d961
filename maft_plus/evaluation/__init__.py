"""Evaluation that detectron2 lacks: the legacy mIoU next to the current one, and evaluation that
skips (and reports) bad images and labels instead of stopping.

Panoptic quality (PQ/SQ/RQ for all, things and stuff) is detectron2's ``COCOPanopticEvaluator``,
scored on the images that were evaluated.
"""

from .loop import NothingEvaluatedError
from .panoptic_evaluation import PanopticSubsetEvaluator
from .sem_seg_evaluation import OpenVocabSemSegEvaluator, segmentation_metrics

__all__ = [
    "NothingEvaluatedError",
    "OpenVocabSemSegEvaluator",
    "PanopticSubsetEvaluator",
    "segmentation_metrics",
]
