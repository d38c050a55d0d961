"""Test-time mapper: detectron2's inference ``DatasetMapper``, except that a bad record is skipped.

For a good record the output is that of ``DatasetMapper(cfg, is_train=False)``: the image read in
``cfg.INPUT.FORMAT`` and resized by ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)``, so
evaluation numbers do not change. A record whose image or label files cannot be used (missing,
corrupt, truncated, not an image, or of the wrong size) does not raise: the mapper logs a warning
and returns ``{"file_name": ..., "skip_reason": ...}``, which the evaluation loop leaves out of the
batch and reports.

Shapes: H, W the resized image size; h, w the image size as read.
"""

import copy
import logging

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image

from .semantic_mapper import check_label

logger = logging.getLogger(__name__)

# What PIL (through detectron2's read_image) raises for a missing, truncated, corrupt or foreign
# file: OSError covers FileNotFoundError, UnidentifiedImageError and "image file is truncated".
IMAGE_READ_ERRORS = (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError)

SKIP_REASON = "skip_reason"  # the key that marks a skipped record in the mapper's output


class SkippedRecordError(Exception):
    """A dataset record that cannot be evaluated; the message names the file(s) and the fault."""


class EvaluationMapper:
    """Map a dataset dict (``file_name``; ``sem_seg_file_name`` and/or ``pan_seg_file_name``;
    optional ``height``/``width``) to a model input, or to a skip record.

    Output dict of a good record: the record's keys (without ``sem_seg_file_name`` and
    ``annotations``, as detectron2's inference mapper drops them) plus ``image`` (3, H, W) uint8 in
    ``image_format``, ``height``/``width`` (h, w) and, when the record has a semantic label,
    ``sem_seg`` (H, W) int64 resized like the image.

    Output dict of a bad record: ``file_name`` and ``skip_reason``, a message naming the file(s)
    and what was expected.
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
            return {"file_name": dataset_dict["file_name"], SKIP_REASON: str(exc)}

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


def read_checked(
    path: str, what: str, image_file: str | None = None, format: str | None = None
) -> np.ndarray:
    """``detection_utils.read_image(path, format)``; a :class:`SkippedRecordError` naming ``what``
    ("image", "label"), ``path`` and the ``image_file`` it belongs to if the file is missing or
    cannot be decoded."""
    name = f"{what} {path}" + (f" of image {image_file}" if image_file else "")
    try:
        return utils.read_image(path, format=format)
    except FileNotFoundError as exc:
        raise SkippedRecordError(f"{name} not found") from exc
    except IMAGE_READ_ERRORS as exc:
        raise SkippedRecordError(f"could not read the {name}: {exc}") from exc
