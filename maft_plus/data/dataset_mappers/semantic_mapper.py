"""Training mapper for semantic segmentation: image + label png -> tensors and per-class masks.

design.md section 7: resize shortest edge (800, max 1333), horizontal flip, optional crop; one
binary target mask per class present, the ignore label excluded.

Shapes: H, W the augmented image size; N classes present in the label.
"""

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Instances

from ..skip_records import SkippedRecordError, read_checked
from .train_mapper import TrainMapper, read_image


class SemanticTrainMapper(TrainMapper):
    """Map a ``load_sem_seg`` dict (``file_name``, ``sem_seg_file_name``) to a training sample.

    Output dict: ``image`` (3, H, W) uint8 in ``image_format``; ``sem_seg`` (H, W) int64 class ids,
    ``ignore_label`` where unlabeled; ``instances`` with ``gt_classes`` (N,) int64 and ``gt_masks``
    (N, H, W) bool, one mask per class present (``gt_masks[i] == (sem_seg == gt_classes[i])``);
    ``height``/``width`` of the image as read; ``file_name``.

    A sample is skipped (None; see ``TrainMapper``) when its image or label is missing or cannot
    be decoded, the image is not the size its record says, or the label is not a single-channel
    map of the image's size holding only ids 0..K-1 and the ignore label.
    """

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict:
        """Augmentations from ``cfg.INPUT`` (MIN/MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING,
        RANDOM_FLIP, CROP.*); the rest from ``TrainMapper.shared_options``."""
        if not is_train:
            raise ValueError("SemanticTrainMapper is for training; got is_train=False")
        augmentations = utils.build_augmentation(cfg, is_train=True)  # resize, then flip
        if cfg.INPUT.CROP.ENABLED:
            crop = T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE)
            augmentations.insert(1, crop)  # crop the resized image, before the flip
        return {"augmentations": augmentations, **cls.shared_options(cfg)}

    def map_sample(self, dataset_dict: dict) -> dict:
        image_file = dataset_dict["file_name"]
        image = read_image(dataset_dict, self.image_format)  # (h, w, 3)
        label_file = dataset_dict.pop("sem_seg_file_name")
        label = read_checked(label_file, "label", image_file)
        try:
            label = check_label(label, label_file, image.shape[:2], image_file)  # (h, w)
            check_label_ids(label, self.num_classes, self.ignore_label, label_file)
        except ValueError as exc:  # wrong size, not a single-channel map, or ids out of range
            raise SkippedRecordError(str(exc)) from exc

        aug_input = T.AugInput(image, sem_seg=label)
        self.augmentations(aug_input)
        image, label = aug_input.image, aug_input.sem_seg

        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (3, H, W)
        sem_seg = torch.as_tensor(label.astype(np.int64))  # (H, W)
        dataset_dict["image"] = image
        dataset_dict["sem_seg"] = sem_seg
        dataset_dict["instances"] = class_instances(sem_seg, self.ignore_label)
        return dataset_dict


def check_label(
    label: np.ndarray, label_file: str, image_hw: tuple[int, int], image_file: str
) -> np.ndarray:
    """``label`` as read from ``label_file``, checked to be an (H, W) map of the image's size.

    uint8 labels stay uint8 (resized by PIL); wider ones (uint16 tif) become float64, which
    detectron2's transforms resize by nearest-neighbour torch interpolation, exactly. A ValueError
    names both files otherwise.
    """
    if label.ndim != 2:
        raise ValueError(
            f"label {label_file} has shape {label.shape}; expected a single-channel (H, W) map"
        )
    if label.shape != tuple(image_hw):
        raise ValueError(
            f"label {label_file} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{image_file} is {image_hw[1]}x{image_hw[0]}"
        )
    return label if label.dtype == np.uint8 else label.astype(np.float64)


def check_label_ids(
    label: np.ndarray, num_classes: int, ignore_label: int, label_file: str
) -> None:
    """Raise a ValueError naming ``label_file`` if it holds an id outside 0..K-1 and the ignore."""
    ids = np.unique(label)
    bad = ids[(ids != ignore_label) & ((ids < 0) | (ids >= num_classes))]
    if bad.size:
        raise ValueError(
            f"label {label_file} holds class ids {bad.astype(np.int64).tolist()} outside "
            f"0..{num_classes - 1} (ignore label {ignore_label})"
        )


def class_instances(sem_seg: torch.Tensor, ignore_label: int) -> Instances:
    """One instance per class present in ``sem_seg`` (H, W): gt_classes (N,), gt_masks (N, H, W)."""
    classes = torch.unique(sem_seg)
    classes = classes[classes != ignore_label]  # (N,)
    instances = Instances(tuple(sem_seg.shape))
    instances.gt_classes = classes.to(torch.int64)
    instances.gt_masks = sem_seg[None] == classes[:, None, None]  # (N, H, W)
    return instances
