"""What the training mappers share: their options, where K and the ignore label come from, and
the skipping of samples whose files cannot be used."""

import copy
import logging
from abc import ABC, abstractmethod

import numpy as np
from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from ..skip_records import SkippedRecordError, read_checked
from ..skipped_samples import PendingSkips, SkipLimit

logger = logging.getLogger(__name__)


class TrainMapper(ABC):
    """Base of the training mappers: augmentations, the image format, K, the ignore label, and
    what happens to a bad sample.

    Subclasses define ``from_config`` (their augmentations, plus `shared_options`) and
    ``map_sample`` (a copy of a dataset dict to a training sample, raising
    ``SkippedRecordError`` naming the file(s) when they cannot be used).

    Calling the mapper returns the sample, or None for a bad one: detectron2's ``MapDataset`` then
    maps another dataset dict instead, and the skip record rides to the trainer with this
    mapper's next good sample (``skipped_samples.SKIPPED_KEY``), where it is logged and counted.
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: list[T.Augmentation],
        image_format: str,
        ignore_label: int,
        num_classes: int,
        skip_limit: SkipLimit,
    ) -> None:
        """
        Args:
            augmentations: applied to the image and its label map together, in order.
            image_format: ``detection_utils.read_image`` format of the output image ("RGB").
            ignore_label: the ``sem_seg`` value of unlabeled pixels (they get no mask).
            num_classes: K; a sample with a class id outside 0..K-1 (other than
                ``ignore_label``) is skipped.
            skip_limit: when bad samples in a row stop the run here, before the trainer could
                count them (``skipped_samples.PendingSkips``).
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.num_classes = num_classes
        self.skips = PendingSkips(limit=skip_limit)
        logger.info("%s augmentations: %s", type(self).__name__, self.augmentations)

    @staticmethod
    def shared_options(cfg: CfgNode) -> dict:
        """``image_format`` from ``cfg.INPUT.FORMAT``; ignore label and K from the metadata of
        ``cfg.DATASETS.TRAIN[0]``; the skip limit from ``cfg.DATALOADER``."""
        metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return {
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": metadata.ignore_label,
            "num_classes": len(metadata.stuff_classes),
            "skip_limit": SkipLimit.from_config(cfg),
        }

    def __call__(self, dataset_dict: dict) -> dict | None:
        """The training sample of ``dataset_dict``, or None when its files cannot be used.

        Raises:
            SkippedSamplesError: too many bad samples in a row (see ``PendingSkips.skip``).
        """
        try:
            # a copy: the caller's dict is reused across epochs
            sample = self.map_sample(copy.deepcopy(dataset_dict))
        except SkippedRecordError as exc:
            self.skips.skip(dataset_dict["file_name"], str(exc))
            return None
        return self.skips.deliver(sample)

    @abstractmethod
    def map_sample(self, dataset_dict: dict) -> dict:
        """``dataset_dict`` (the mapper's own copy) made into a training sample."""


def read_image(dataset_dict: dict, image_format: str) -> np.ndarray:
    """The (h, w, C) image of ``dataset_dict["file_name"]``, checked against the dict's
    ``height``/``width`` when it has them and setting them when it does not.

    Raises:
        SkippedRecordError: the image is missing or cannot be decoded, or its size is not the
            dict's; the message names the file.
    """
    image_file = dataset_dict["file_name"]
    image = read_checked(image_file, "image", format=image_format)  # (h, w, C)
    height, width = image.shape[:2]
    expected = (dataset_dict.get("height", height), dataset_dict.get("width", width))
    if expected != (height, width):
        raise SkippedRecordError(
            f"image {image_file} is {width}x{height} (WxH) but its dataset record says "
            f"{expected[1]}x{expected[0]}"
        )
    dataset_dict["height"], dataset_dict["width"] = height, width
    return image
