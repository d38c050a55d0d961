"""Evaluation mapper: detectron2's inference ``DatasetMapper``, except that a bad record is skipped.

For a good record the output is that of ``DatasetMapper(cfg, is_train=False)``: the image read in
``cfg.INPUT.FORMAT`` and resized by ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, so
evaluation numbers do not change. A record whose image or label files cannot be used (missing,
corrupt, truncated, not an image, or of the wrong size) does not raise: the mapper logs a warning
and returns its skip record (``data/skip_records.py``), which the evaluation loop leaves out of
the batch and reports.

Shapes: H, W the resized image size; h, w the image size as read.
"""

import copy
import logging

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..skip_records import SkippedRecordError, read_checked, skip_record
from .semantic_mapper import check_label

logger = logging.getLogger(__name__)


class EvaluationMapper:
    """Map a dataset dict (``file_name``; ``sem_seg_file_name`` and/or ``pan_seg_file_name``;
    optional ``height``/``width``) to a model input, or to a skip record.

    Output dict of a good record: the record's keys (without ``sem_seg_file_name`` and
    ``annotations``, as detectron2's inference mapper drops them) plus ``image`` (3, H, W) uint8 in
    ``image_format``, ``height``/``width`` (h, w) and, when the record has a semantic label,
    ``sem_seg`` (H, W) int64 resized like the image.

    Output dict of a bad record: its skip record, ``file_name`` and ``reason`` (a message naming
    the file(s) and what was expected).
    """

    @configurable
    def __init__(self, *, augmentations: list[T.Augmentation], image_format: str) -> None:
        """
        Args:
            augmentations: deterministic resizes applied to the image and label, in order.
            image_format: ``detection_utils.read_image`` format of the output image ("RGB").
        """
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        logger.info("EvaluationMapper augmentations: %s", self.augmentations)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        """detectron2's test resize: ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, MAX_SIZE_TEST)``."""
        return {
            "augmentations": utils.build_augmentation(cfg, is_train=False),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        try:
            return self._map(dataset_dict)
        except SkippedRecordError as exc:
            logger.warning("skipping %s: %s", dataset_dict["file_name"], exc)
            return skip_record(dataset_dict["file_name"], str(exc))

    def _map(self, dataset_dict: dict) -> dict:
        record = copy.deepcopy(dataset_dict)  # the caller's dict is reused by later evaluations
        image_file = record["file_name"]
        image = read_checked(image_file, "image", format=self.image_format)  # (h, w, C)
        image_hw = image.shape[:2]
        expected_hw = (record.get("height", image_hw[0]), record.get("width", image_hw[1]))
        if tuple(image_hw) != tuple(expected_hw):
            raise SkippedRecordError(
                f"image {image_file} is {image_hw[1]}x{image_hw[0]} (WxH) but its dataset record "
                f"says {expected_hw[1]}x{expected_hw[0]}"
            )
        record["height"], record["width"] = image_hw

        label = None
        label_file = record.pop("sem_seg_file_name", None)
        if label_file is not None:
            label = read_checked(label_file, "label", image_file)
            try:
                label = check_label(label, label_file, image_hw, image_file)  # (h, w)
            except ValueError as exc:  # wrong size or not a single-channel map
                raise SkippedRecordError(str(exc)) from exc
        panoptic_file = record.get("pan_seg_file_name")
        if panoptic_file is not None:
            panoptic = read_checked(panoptic_file, "panoptic png", image_file, "RGB")
            if panoptic.shape[:2] != image_hw:
                raise SkippedRecordError(
                    f"panoptic png {panoptic_file} is {panoptic.shape[1]}x{panoptic.shape[0]} "
                    f"(WxH) but its image {image_file} is {image_hw[1]}x{image_hw[0]}"
                )

        aug_input = T.AugInput(image, sem_seg=label)
        self.augmentations(aug_input)
        image = aug_input.image  # (H, W, C)
        record["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if label is not None:
            record["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))  # (H, W)
        record.pop("annotations", None)
        return record
