"""Build A-847 validation from ADE20K-full, as the released checkpoints were scored.

    python datasets/prepare_ade20k_847.py [--root $DETECTRON2_DATASETS]

Expects ADE20K-full (ADE20K_2021_17_01.zip, from https://groups.csail.mit.edu/vision/datasets/ADE20K/
after signing up) unpacked in the datasets root:

    ADE20K_2021_17_01/
      images/ADE/validation/<scene folders>/ADE_val_*.jpg  2000 images, <stem>_seg.png beside each

A ``_seg.png`` codes the object class of each pixel in red and green: code = R // 10 * 256 + G,
0 = unlabeled. The 847 classes are a fixed table of codes in frequency order
(``maft_plus/data/tables/ade847_object_codes.txt``): train id 0 is wall (code 2978), 1 building
(312), ..., 846 adding machine (3148); every other code is ignored. As in the reference
preparation, an image whose shorter side exceeds 512 pixels is resized to a shorter side of 512
(the longer side rounded; OpenCV, the image bilinear and the codes nearest), and every image is
saved again as JPEG with PIL's default quality, resized or not. Writes

    ADE20K_2021_17_01/
      images_detectron2/validation/<stem>.jpg       the (resized) image
      annotations_detectron2/validation/<stem>.tif  uint16 train ids 0..846, 65535 ignored

registered as ``maftp_ade847_val`` (its class lists ship with the package). Safe to re-run:
up-to-date files are skipped.
"""

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maft_plus.data.ade_tables import ADE847_NUM_CLASSES, ade847_code_lookup
from maft_plus.data.datasets.register_ade import (
    ADE847_FOLDER,
    ADE847_IMAGES,
    ADE847_LABELS,
    ADE_VAL_IMAGES,
)
from maft_plus.data.prepare import (
    Conversions,
    argument_parser,
    check_count,
    parse_arguments,
    progress,
    require_input,
    write_atomically,
    write_label_map,
)

logger = logging.getLogger(__name__)

DOWNLOAD = "ADE20K_2021_17_01.zip (ADE20K full, groups.csail.mit.edu/vision/datasets/ADE20K)"
MAX_SHORT_SIDE = 512  # images with a longer shorter side are resized to it


def decode_classes(seg: np.ndarray, source: Path) -> np.ndarray:
    """(H, W, 3) uint8 _seg.png -> (H, W) int32 object codes, R // 10 * 256 + G."""
    if seg.ndim != 3 or seg.shape[2] < 3 or seg.dtype != np.uint8:
        raise ValueError(f"{source}: expected an RGB uint8 png, got {seg.dtype} {seg.shape}")
    red, green = seg[..., 0].astype(np.int32), seg[..., 1].astype(np.int32)  # (H, W) each
    return red // 10 * 256 + green


def resized_size(height: int, width: int) -> tuple[int, int] | None:
    """(height, width) after the reference resize, or None if the image keeps its size.

    A shorter side over 512 becomes 512 and the longer side keeps the aspect ratio, rounded
    (Python's round): 1024 x 768 (width x height) becomes 683 x 512.
    """
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / height * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / width * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def convert(image_file: Path, seg_file: Path, image_target: Path, label_target: Path) -> bool:
    """Write the (resized) JPEG image and the uint16 train-id labels of one image.

    Returns:
        Whether the image was resized.
    """
    image = np.asarray(Image.open(image_file))  # (H, W, 3) uint8, as decoded by PIL
    codes = decode_classes(np.asarray(Image.open(seg_file)), seg_file)  # (H, W)
    if codes.shape != image.shape[:2]:
        raise ValueError(f"{seg_file} is {codes.shape} but {image_file} is {image.shape[:2]}")
    size = resized_size(*codes.shape)
    if size is not None:
        height, width = size
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        codes = cv2.resize(codes, (width, height), interpolation=cv2.INTER_NEAREST)
    labels = ade847_code_lookup()[codes]  # (h, w) uint16
    write_atomically(image_target, lambda name: Image.fromarray(image).save(name, "JPEG"))
    write_label_map(labels, label_target)
    return size is not None


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=ADE_VAL_IMAGES), argv)
    root = Path(args.root)
    folder = require_input(root / ADE847_FOLDER, "the ADE20K-full folder", DOWNLOAD)
    val_dir = require_input(
        folder / "images" / "ADE" / "validation", "the ADE20K-full validation images", DOWNLOAD
    )
    images = sorted(val_dir.rglob("*.jpg"))
    stems = [image.stem for image in images]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{val_dir} holds several images with the same name")

    image_dir, label_dir = root / ADE847_IMAGES, root / ADE847_LABELS
    conversions, resized = Conversions(), 0
    for image in progress(images, "A-847 validation"):
        seg_file = require_input(
            image.with_name(f"{image.stem}_seg.png"), f"the class mask of {image.name}", DOWNLOAD
        )
        image_target = image_dir / image.name
        label_target = label_dir / f"{image.stem}.tif"
        if conversions.skip([image_target, label_target], image, seg_file):
            continue
        resized += convert(image, seg_file, image_target, label_target)

    check_count(image_dir, "*.jpg", args.expected_val_images, "A-847 validation images")
    count = check_count(label_dir, "*.tif", args.expected_val_images, "A-847 validation labels")
    print(
        f"A-847 validation: {count} JPEG images in {image_dir} ({resized} of those written now "
        f"resized to a shorter side of {MAX_SHORT_SIDE}) and {ADE847_NUM_CLASSES}-class uint16 "
        f"labels in {label_dir} ({conversions})"
    )


if __name__ == "__main__":
    main()
