"""Prepare the Pascal Context validation set as PC-59 (png) and PC-459 (uint16 tif) label maps.

    python datasets/prepare_pascal_context.py [--root $DETECTRON2_DATASETS]

Expects, under the datasets root (default $DETECTRON2_DATASETS, else datasets/):

    VOCdevkit/VOC2010/                     VOCtrainval_03-May-2010.tar (PASCAL VOC 2010), unpacked
        JPEGImages/<id>.jpg
        ImageSets/Main/val.txt             the 5105 validation ids
        pascal_context/                    PASCAL-Context full release (trainval.tar.gz), unpacked
            trainval/<id>.mat              LabelMap: uint16, 1..459 = labels.txt classes, 0 = none
            labels.txt                     459 lines "k: name"

and writes, for every validation id:

    VOCdevkit/VOC2010/
        images_detectron2/val/<id>.jpg     hard links to JPEGImages (copies if linking fails)
        annotations_detectron2/
            pc459_val/<id>.tif             uint16: label k -> k-1, unlabeled -> 65535
            pc59_val/<id>.png              uint8: the 59 classes -> 0..58, anything else -> 255

The class lists of both ship with the package. PC-459's class k is label k + 1 of labels.txt (a
labels.txt that differs from the shipped plain list is reported); each PC-59 class is found in
labels.txt by its plain name.
Safe to re-run: up-to-date outputs are skipped. Ends by checking the number of files.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from maft_plus.data.datasets.register_pascal import (
    PASCAL_CONTEXT,
    PC59_LABELS,
    PC459_LABELS,
    PC_IMAGES,
    VOC2010,
)
from maft_plus.data.label_formats import PNG_IGNORE, TIF_IGNORE
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
from maft_plus.data.vocabulary.class_lists import builtin_class_list

logger = logging.getLogger(__name__)

NUM_VAL_IMAGES = 5105
VOC2010_SOURCE = "VOCtrainval_03-May-2010.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/)"
CONTEXT_SOURCE = "trainval.tar.gz (https://cs.stanford.edu/~roozbeh/pascal-context/)"


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=NUM_VAL_IMAGES), argv)
    root = Path(args.root)

    voc = root / VOC2010
    image_dir = require_input(voc / "JPEGImages", "the VOC2010 image folder", VOC2010_SOURCE)
    split_file = require_input(
        voc / "ImageSets/Main/val.txt", "the VOC2010 validation split", VOC2010_SOURCE
    )
    mat_dir = require_input(
        root / PASCAL_CONTEXT / "trainval", "the PASCAL-Context label folder", CONTEXT_SOURCE
    )
    labels_file = require_input(
        root / PASCAL_CONTEXT / "labels.txt", "the PASCAL-Context label list", CONTEXT_SOURCE
    )

    label_names = read_label_names(labels_file)
    compare_with_shipped(label_names, labels_file)
    pc59_lookup = pc59_lookup_table(label_names, labels_file)
    val_ids = read_split(split_file, expected=args.expected_val_images)

    conversions = Conversions()
    for image_id in progress(val_ids, "Pascal Context val", total=len(val_ids)):
        image = require_input(image_dir / f"{image_id}.jpg", "a validation image", VOC2010_SOURCE)
        mat = require_input(mat_dir / f"{image_id}.mat", "a PASCAL-Context label", CONTEXT_SOURCE)
        link_or_copy(image, root / PC_IMAGES / f"{image_id}.jpg")
        pc459_path = root / PC459_LABELS / f"{image_id}.tif"
        pc59_path = root / PC59_LABELS / f"{image_id}.png"
        if conversions.skip([pc459_path, pc59_path], mat, labels_file):
            continue
        label_map = read_label_map(mat, image, len(label_names))  # (H, W), 0..L
        pc459 = np.where(label_map == 0, TIF_IGNORE, label_map.astype(np.int64) - 1)
        write_label_map(pc459.astype(np.uint16), pc459_path)
        write_label_map(pc59_lookup[label_map], pc59_path)

    expected = args.expected_val_images
    check_count(root / PC_IMAGES, "*.jpg", expected, "Pascal Context val images")
    check_count(root / PC459_LABELS, "*.tif", expected, "PC-459 val labels")
    check_count(root / PC59_LABELS, "*.png", expected, "PC-59 val labels")
    print(
        f"Pascal Context val: {expected} images in {root / PC_IMAGES}, labels in "
        f"{root / PC59_LABELS} (59 classes) and {root / PC459_LABELS} ({len(label_names)} classes)"
    )


def read_label_names(labels_file: Path) -> list[str]:
    """The class names of ``labels.txt`` (lines ``k: name``, k = 1, 2, ...), in label order."""
    names = []
    for line_no, raw in enumerate(labels_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        id_text, sep, name = line.partition(":")
        if not sep or not id_text.strip().isdigit() or not name.strip():
            raise ValueError(f"{labels_file}, line {line_no} ({line!r}): expected 'k: name'")
        if int(id_text) != len(names) + 1:
            raise ValueError(
                f"{labels_file}, line {line_no} ({line!r}): labels must be numbered 1, 2, ... "
                f"in order, expected {len(names) + 1}"
            )
        names.append(name.strip())
    if not names:
        raise ValueError(f"{labels_file} lists no label")
    return names


def compare_with_shipped(label_names: Sequence[str], labels_file: Path) -> None:
    """Warn if labels.txt does not name the classes of the shipped PC-459 list, in its order."""
    shipped = builtin_class_list("pc459", "plain").names
    differ = [
        k
        for k, (ours, theirs) in enumerate(zip(shipped, label_names, strict=False), start=1)
        if _normalize(ours) != _normalize(theirs)
    ]
    if differ or len(label_names) != len(shipped):
        logger.warning(
            "%s lists %d labels, the shipped PC-459 list %d classes (first differing label: %s); "
            "the registered class names are the shipped ones",
            labels_file,
            len(label_names),
            len(shipped),
            differ[0] if differ else min(len(label_names), len(shipped)) + 1,
        )


def _normalize(name: str) -> str:
    """Compare names ignoring case, spaces and underscores ("potted plant" == "pottedplant")."""
    return "".join(name.lower().replace("_", " ").split())


def pc59_lookup_table(label_names: Sequence[str], labels_file: Path) -> np.ndarray:
    """(L + 1,) uint8 table from a labels.txt label (0..L) to its PC-59 id, 255 if none.

    Each PC-59 class is the labels.txt label whose name equals one of its synonyms.
    """
    by_name: dict[str, int] = {}
    for label, name in enumerate(label_names, start=1):
        by_name.setdefault(_normalize(name), label)
    lookup = np.full(len(label_names) + 1, PNG_IGNORE, dtype=np.uint8)
    for class_id, synonyms in enumerate(builtin_class_list("pc59", "plain").names):
        candidates = [s.strip() for s in synonyms.split(",") if s.strip()]
        labels = [by_name[_normalize(s)] for s in candidates if _normalize(s) in by_name]
        if not labels:
            raise ValueError(
                f"the PC-59 class {candidates[0]!r} is not in {labels_file}; is it the 459-class "
                f"label list of the PASCAL-Context full release? ({CONTEXT_SOURCE})"
            )
        if lookup[labels[0]] != PNG_IGNORE:
            raise ValueError(f"{labels_file}: label {labels[0]} matches two PC-59 classes")
        lookup[labels[0]] = class_id
    return lookup


def read_label_map(mat: Path, image: Path, num_labels: int) -> np.ndarray:
    """The ``LabelMap`` of a PASCAL-Context .mat file: (H, W) ints in 0..num_labels."""
    contents = scipy.io.loadmat(str(mat))
    if "LabelMap" not in contents:
        raise ValueError(f"{mat} has no LabelMap (keys: {sorted(contents)})")
    label_map = np.asarray(contents["LabelMap"])
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(
            f"{mat}: LabelMap must be a 2-D integer array, got {label_map.dtype} {label_map.shape}"
        )
    if label_map.min() < 0 or label_map.max() > num_labels:
        raise ValueError(
            f"{mat}: LabelMap values span {label_map.min()}..{label_map.max()}, expected "
            f"0..{num_labels} (the labels of labels.txt)"
        )
    with Image.open(image) as img:  # reads the header only
        width, height = img.size
    if label_map.shape != (height, width):
        raise ValueError(f"{mat}: LabelMap is {label_map.shape}, but {image} is {(height, width)}")
    return label_map


if __name__ == "__main__":
    main()
