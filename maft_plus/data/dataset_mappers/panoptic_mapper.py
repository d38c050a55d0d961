"""Training mapper for panoptic segmentation with large-scale jitter: one target mask per segment.

design.md section 7 (paper's panoptic training on COCO-Panoptic): the Mask2Former large-scale jitter
recipe, i.e. resize to fit a randomly scaled square (scale 0.1 to 2.0 of the target side), crop or
pad to the target side, horizontal flip. Thing instances stay separate masks, each stuff segment is
one mask, crowd segments are dropped.

Shapes: H, W the augmented image size (the target side with padding); N segments kept.
"""

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.structures import Instances
from panopticapi.utils import rgb2id

from ..skip_records import SkippedRecordError, read_checked
from .train_mapper import TrainMapper, read_image


def build_lsj_augmentations(
    image_size: int, min_scale: float, max_scale: float, random_flip: str = "horizontal"
) -> list[T.Augmentation]:
    """Large-scale jitter: ResizeScale to a randomly scaled ``image_size`` square, FixedSizeCrop
    (pads with 128 in the image and 255 in segmentations), then the flip ("none", "horizontal",
    "vertical", as ``cfg.INPUT.RANDOM_FLIP``)."""
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale} and {max_scale}")
    if random_flip not in ("none", "horizontal", "vertical"):
        raise ValueError(f"random_flip must be none, horizontal or vertical, got {random_flip!r}")
    augmentations = [
        T.ResizeScale(min_scale, max_scale, image_size, image_size),
        T.FixedSizeCrop(crop_size=(image_size, image_size)),
    ]
    if random_flip != "none":
        flip = T.RandomFlip(
            horizontal=random_flip == "horizontal", vertical=random_flip == "vertical"
        )
        augmentations.append(flip)
    return augmentations


class PanopticTrainMapper(TrainMapper):
    """Map a COCO-panoptic dict (``file_name``, ``pan_seg_file_name``, ``segments_info`` with
    contiguous ``category_id`` and ``iscrowd``) to a training sample.

    Output dict: ``image`` (3, H, W) uint8 in ``image_format``; ``instances`` with ``gt_classes``
    (N,) int64 contiguous ids and ``gt_masks`` (N, H, W) bool, one per non-crowd segment still
    visible after augmentation; ``sem_seg`` (H, W) int64, each kept segment's class and
    ``ignore_label`` elsewhere (unlabeled, crowd, padding); ``height``/``width`` of the image as
    read; ``file_name``; ``image_id``.

    A sample is skipped (None; see ``TrainMapper``) when its image or panoptic png is missing or
    cannot be decoded, the two sizes differ (or the image's is not its record's), or a segment's
    ``category_id`` is outside 0..K-1.
    """

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict:
        """Jitter from ``cfg.MODEL.MAFT_PLUS.LSJ`` and ``cfg.INPUT.RANDOM_FLIP``; the rest from
        ``TrainMapper.shared_options``."""
        if not is_train:
            raise ValueError("PanopticTrainMapper is for training; got is_train=False")
        lsj = cfg.MODEL.MAFT_PLUS.LSJ
        augmentations = build_lsj_augmentations(
            lsj.IMAGE_SIZE, lsj.MIN_SCALE, lsj.MAX_SCALE, cfg.INPUT.RANDOM_FLIP
        )
        return {"augmentations": augmentations, **cls.shared_options(cfg)}

    def map_sample(self, dataset_dict: dict) -> dict:
        image_file = dataset_dict["file_name"]
        image = read_image(dataset_dict, self.image_format)  # (h, w, 3)
        panoptic_file = dataset_dict.pop("pan_seg_file_name")
        dataset_dict.pop("sem_seg_file_name", None)  # rebuilt from the panoptic png below
        panoptic_rgb = read_checked(panoptic_file, "panoptic png", image_file, "RGB")  # (h, w, 3)
        if panoptic_rgb.shape[:2] != image.shape[:2]:
            raise SkippedRecordError(
                f"panoptic png {panoptic_file} is {panoptic_rgb.shape[1]}x{panoptic_rgb.shape[0]} "
                f"(WxH) but its image {image_file} is {image.shape[1]}x{image.shape[0]}"
            )
        segments = dataset_dict.pop("segments_info")
        for segment in segments:
            if not 0 <= segment["category_id"] < self.num_classes:
                raise SkippedRecordError(
                    f"segment {segment['id']} of {panoptic_file} has category_id "
                    f"{segment['category_id']}, outside the contiguous ids "
                    f"0..{self.num_classes - 1}"
                )

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        # transform the RGB-coded ids (nearest-neighbour, padding 255) and decode afterwards
        panoptic = rgb2id(transforms.apply_segmentation(panoptic_rgb))  # (H, W)

        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (3, H, W)
        dataset_dict["image"] = image
        dataset_dict["instances"], dataset_dict["sem_seg"] = segment_instances(
            torch.as_tensor(panoptic.astype(np.int64)), segments, self.ignore_label
        )
        return dataset_dict


def segment_instances(
    panoptic: torch.Tensor, segments: list[dict], ignore_label: int
) -> tuple[Instances, torch.Tensor]:
    """One instance per non-crowd segment with pixels in ``panoptic`` (H, W) segment ids.

    Returns:
        instances: gt_classes (N,) int64, gt_masks (N, H, W) bool.
        sem_seg: (H, W) int64, the kept segments' classes, ``ignore_label`` elsewhere.
    """
    height, width = panoptic.shape
    sem_seg = torch.full((height, width), ignore_label, dtype=torch.int64)
    classes, masks = [], []
    for segment in segments:
        if segment.get("iscrowd", 0):
            continue
        mask = panoptic == segment["id"]  # (H, W)
        if not mask.any():  # cropped away
            continue
        classes.append(segment["category_id"])
        masks.append(mask)
        sem_seg[mask] = segment["category_id"]
    instances = Instances((height, width))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    instances.gt_masks = (
        torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool)
    )  # (N, H, W)
    return instances, sem_seg
