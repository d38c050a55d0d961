"""Convert the ADE20K scene-parsing validation labels (A-150) to contiguous class ids.

    python datasets/prepare_ade20k_150.py [--root $DETECTRON2_DATASETS]

Expects the scene-parsing challenge download (ADEChallengeData2016.zip, from
http://sceneparsing.csail.mit.edu/) unpacked in the datasets root:

    ADEChallengeData2016/
      images/validation/ADE_val_*.jpg            2000 images
      annotations/validation/ADE_val_*.png       uint8: 0 = other (unlabeled), 1..150 = classes

Writes

    ADEChallengeData2016/
      annotations_detectron2/validation/ADE_val_*.png   uint8: label - 1 (0..149), 255 = unlabeled

registered as ``maftp_ade150_val`` (class names: the shipped ``ade150`` lists), and the
semantic labels of ADE20K panoptic. Only the validation split is converted. Safe to re-run:
label maps newer than their source are skipped.
"""

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from maft_plus.data.ade_tables import ADE150_NUM_CLASSES
from maft_plus.data.datasets.register_ade import (
    ADE150_FOLDER,
    ADE150_IMAGES,
    ADE150_LABELS,
    ADE_VAL_IMAGES,
)
from maft_plus.data.label_formats import PNG_IGNORE
from maft_plus.data.prepare import (
    Conversions,
    argument_parser,
    check_count,
    parse_arguments,
    progress,
    require_input,
    write_label_map,
)

logger = logging.getLogger(__name__)

DOWNLOAD = "ADEChallengeData2016.zip (ADE20K scene parsing, sceneparsing.csail.mit.edu)"


def contiguous_labels(labels: np.ndarray, source: Path) -> np.ndarray:
    """(H, W) uint8 scene-parsing labels (0 = other, 1..150) -> (H, W) uint8 0..149, 255 = other."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(
            f"{source}: expected a single-channel uint8 png, got {labels.dtype} {labels.shape}"
        )
    if labels.max(initial=0) > ADE150_NUM_CLASSES:
        raise ValueError(
            f"{source}: label {labels.max()} found, expected 0..{ADE150_NUM_CLASSES} "
            "(is this an ADE20K scene-parsing annotation?)"
        )
    return np.where(labels == 0, PNG_IGNORE, labels - 1).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=ADE_VAL_IMAGES), argv)
    root = Path(args.root)
    require_input(root / ADE150_FOLDER, "the ADE20K scene-parsing folder", DOWNLOAD)
    image_dir = require_input(root / ADE150_IMAGES, "the ADE20K validation images", DOWNLOAD)
    source_dir = require_input(
        root / ADE150_FOLDER / "annotations" / "validation",
        "the ADE20K validation annotations",
        DOWNLOAD,
    )
    output_dir = root / ADE150_LABELS
    sources = sorted(source_dir.glob("*.png"))
    conversions = Conversions()
    for source in progress(sources, "A-150 validation labels"):
        target = output_dir / source.name
        if conversions.skip([target], source):
            continue
        labels = np.asarray(Image.open(source))
        write_label_map(contiguous_labels(labels, source), target)

    check_count(image_dir, "*.jpg", args.expected_val_images, "A-150 validation images")
    count = check_count(output_dir, "*.png", args.expected_val_images, "A-150 validation labels")
    print(f"A-150 validation: {count} label maps in {output_dir} ({conversions})")


if __name__ == "__main__":
    main()
