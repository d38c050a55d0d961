"""What the training mappers share: their options and where K and the ignore label come from."""

import logging

from detectron2.config import CfgNode, configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

logger = logging.getLogger(__name__)


class TrainMapper:
    """Base of the training mappers: augmentations, the image format, K and the ignore label.

    Subclasses define ``from_config`` (their augmentations, plus `metadata_options`) and
    ``__call__`` (a dataset dict to a training sample).
    """

    @configurable
    def __init__(
        self,
        *,
        augmentations: list[T.Augmentation],
        image_format: str,
        ignore_label: int,
        num_classes: int,
    ) -> None:
        """
        Args:
            augmentations: applied to the image and its label map together, in order.
            image_format: ``detection_utils.read_image`` format of the output image ("RGB").
            ignore_label: the ``sem_seg`` value of unlabeled pixels (they get no mask).
            num_classes: K; a class id outside 0..K-1 (other than ``ignore_label``) is an error.
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.augmentations = T.AugmentationList(list(augmentations))
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.num_classes = num_classes
        logger.info("%s augmentations: %s", type(self).__name__, self.augmentations)

    @staticmethod
    def metadata_options(cfg: CfgNode) -> dict:
        """``image_format`` from ``cfg.INPUT.FORMAT``; ignore label and K from the metadata of
        ``cfg.DATASETS.TRAIN[0]``."""
        metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return {
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": metadata.ignore_label,
            "num_classes": len(metadata.stuff_classes),
        }
