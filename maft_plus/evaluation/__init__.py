"""Evaluation that detectron2 lacks: the legacy mIoU next to the current one.

Panoptic quality (PQ/SQ/RQ for all, things and stuff) is detectron2's ``COCOPanopticEvaluator``
as is.
"""

from .sem_seg_evaluation import OpenVocabSemSegEvaluator, segmentation_metrics

__all__ = ["OpenVocabSemSegEvaluator", "segmentation_metrics"]
