"""Prepare the Pascal VOC 2012 segmentation validation set as PAS-20 and PAS-21 label maps.

    python datasets/prepare_pascal_voc.py [--root $DETECTRON2_DATASETS]

Expects, under the datasets root (default $DETECTRON2_DATASETS, else datasets/):

    VOCdevkit/VOC2012/                     VOCtrainval_11-May-2012.tar (PASCAL VOC 2012), unpacked
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png         palette png: 0 = background, 1..20 = classes,
                                           255 = object boundaries ("void")
        ImageSets/Segmentation/val.txt     the 1449 validation ids

and writes, for every validation id:

    VOCdevkit/VOC2012/
        images_detectron2/val/<id>.jpg     hard links to JPEGImages (copies if linking fails)
        annotations_detectron2/
            pas21_val/<id>.png             uint8: 0 = background, 1..20 classes, 255 = ignore
            pas20_val/<id>.png             uint8: class k -> k-1, background and void -> 255

The classes are the built-in ``voc21`` (background first) and ``voc20`` vocabularies. Safe to
re-run: up-to-date outputs are skipped. Ends by checking the number of files.
"""

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from maft_plus.data.datasets.register_pascal import (
    PAS20_LABELS,
    PAS21_LABELS,
    VOC2012,
    VOC_IMAGES,
)
from maft_plus.data.label_formats import PNG_IGNORE
from maft_plus.data.prepare import (
    Conversions,
    argument_parser,
    check_count,
    link_or_copy,
    parse_arguments,
    progress,
    read_split,
    require_input,
    write_label_map,
)

logger = logging.getLogger(__name__)

NUM_VAL_IMAGES = 1449
NUM_CLASSES = 20  # without background
VOC2012_SOURCE = "VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/)"

# PAS-20: background (0) and void (255) are ignored, class k becomes k - 1.
PAS20_LOOKUP = np.full(256, PNG_IGNORE, dtype=np.uint8)
PAS20_LOOKUP[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=NUM_VAL_IMAGES), argv)
    root = Path(args.root)

    voc = root / VOC2012
    image_dir = require_input(voc / "JPEGImages", "the VOC2012 image folder", VOC2012_SOURCE)
    label_dir = require_input(
        voc / "SegmentationClass", "the VOC2012 segmentation labels", VOC2012_SOURCE
    )
    split_file = require_input(
        voc / "ImageSets/Segmentation/val.txt", "the VOC2012 validation split", VOC2012_SOURCE
    )
    val_ids = read_split(split_file, expected=args.expected_val_images)

    conversions = Conversions()
    for image_id in progress(val_ids, "Pascal VOC 2012 val", total=len(val_ids)):
        image = require_input(image_dir / f"{image_id}.jpg", "a validation image", VOC2012_SOURCE)
        label = require_input(label_dir / f"{image_id}.png", "a segmentation label", VOC2012_SOURCE)
        link_or_copy(image, root / VOC_IMAGES / f"{image_id}.jpg")
        pas21_path = root / PAS21_LABELS / f"{image_id}.png"
        pas20_path = root / PAS20_LABELS / f"{image_id}.png"
        if conversions.skip([pas21_path, pas20_path], label):
            continue
        classes = read_class_indices(label, image)  # (H, W) uint8: 0, 1..20, 255
        write_label_map(classes, pas21_path)
        write_label_map(PAS20_LOOKUP[classes], pas20_path)

    expected = args.expected_val_images
    check_count(root / VOC_IMAGES, "*.jpg", expected, "Pascal VOC val images")
    check_count(root / PAS21_LABELS, "*.png", expected, "PAS-21 val labels")
    check_count(root / PAS20_LABELS, "*.png", expected, "PAS-20 val labels")
    print(
        f"Pascal VOC 2012 val: {expected} images in {root / VOC_IMAGES}, labels in "
        f"{root / PAS21_LABELS} (21 classes) and {root / PAS20_LABELS} (20 classes)"
    )


def read_class_indices(label: Path, image: Path) -> np.ndarray:
    """The class indices of a VOC label png (palette or grayscale): (H, W) uint8."""
    with Image.open(label) as png:
        if png.mode not in ("P", "L"):
            raise ValueError(
                f"{label}: expected a palette (P) or grayscale (L) png of class indices, got mode "
                f"{png.mode!r}; use the SegmentationClass pngs of {VOC2012_SOURCE}"
            )
        classes = np.array(png)  # palette indices, not colours
    valid = (classes <= NUM_CLASSES) | (classes == PNG_IGNORE)
    if not valid.all():
        raise ValueError(
            f"{label}: unexpected values {sorted(set(np.unique(classes[~valid]).tolist()))}; "
            f"expected 0 (background), 1..{NUM_CLASSES} or {PNG_IGNORE} (void)"
        )
    with Image.open(image) as img:  # reads the header only
        width, height = img.size
    if classes.shape != (height, width):
        raise ValueError(f"{label} is {classes.shape}, but {image} is {(height, width)}")
    return classes.astype(np.uint8)


if __name__ == "__main__":
    main()
