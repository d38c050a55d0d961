"""Build ADE20K panoptic validation (150 classes: things and stuff) as COCO-panoptic png + json.

    python datasets/prepare_ade20k_panoptic.py [--root $DETECTRON2_DATASETS]

Expects, in the datasets root, the scene-parsing download (ADEChallengeData2016.zip, see
prepare_ade20k_150.py) with the annotations of the ADE20K instance-segmentation challenge
(annotations_instance.tar, from http://sceneparsing.csail.mit.edu/) unpacked into it:

    ADEChallengeData2016/
      images/validation/ADE_val_*.jpg                  2000 images
      annotations/{training,validation}/ADE_*.png      uint8: 0 = other, 1..150 = ADE-150 classes
      annotations_instance/{training,validation}/ADE_*.png
                                                       RGB: R = instance class 1..100 (0 = none),
                                                       G = instance index in the image, B unused

(the training folders are optional; they only help find the thing classes). Things: each instance
class (value of R) stands for the ADE-150 class that most of its pixels have in the scene-parsing
pngs, counted over the instance pngs of both splits; these classes (100 on the real data) are the
things, the other classes stuff. The segments of a validation image are

- one per instance (R > 0, G), labelled with the ADE-150 class most of its labelled pixels have,
  if that class is a thing (otherwise the instance is dropped);
- one per stuff class present, of its pixels not inside a kept instance.

Thing pixels outside every instance and "other" pixels are unlabeled. A segment's id is
category id * 1000 + n, for the n-th segment (from 0) of that category in the image. Writes

    ADEChallengeData2016/
      maftp_ade150_panoptic_categories.json  150 categories: id k + 1 = ADE-150 class k, name,
                                             isthing, color
      ade20k_panoptic_val/ADE_val_*.png      segment ids as RGB (R + 256 G + 65536 B), 0 = none
      ade20k_panoptic_val.json               COCO panoptic: images (id: the number in the file
                                             name), annotations (segments_info: id, category_id,
                                             iscrowd, area, bbox), categories
      ade20k_panoptic_val_semseg/ADE_val_*.png
                                             uint8: category id - 1 of each segment, 255 elsewhere

registered as ``maftp_ade150_panoptic_val``. Safe to re-run: the categories are recounted only
when an annotation is newer than them and up-to-date pngs are skipped.
"""

import json
import logging
from pathlib import Path

import numpy as np
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image

from maft_plus.data.datasets.register_ade import (
    ADE150_FOLDER,
    ADE150_IMAGES,
    ADE150_NUM_CLASSES,
    ADE_NUM_THINGS,
    ADE_PANOPTIC_CATEGORIES,
    ADE_PANOPTIC_JSON,
    ADE_PANOPTIC_PNGS,
    ADE_PANOPTIC_SEMSEG,
    ADE_VAL_IMAGES,
    ade_panoptic_categories,
    read_panoptic_categories,
)
from maft_plus.data.prepare import (
    PNG_IGNORE,
    Conversions,
    argument_parser,
    check_count,
    is_up_to_date,
    parse_arguments,
    progress,
    require_input,
    write_atomically,
    write_label_map,
    write_text_if_changed,
)

logger = logging.getLogger(__name__)

SEMANTIC_DOWNLOAD = "ADEChallengeData2016.zip (ADE20K scene parsing, sceneparsing.csail.mit.edu)"
INSTANCE_DOWNLOAD = (
    "annotations_instance.tar of the ADE20K instance challenge (sceneparsing.csail.mit.edu), "
    "unpacked into ADEChallengeData2016/"
)
NUM_LABELS = ADE150_NUM_CLASSES + 1  # scene-parsing values: 0 = other, 1..150
ID_STRIDE = 1000  # segment id = category id * ID_STRIDE + n

Pair = tuple[Path, Path]  # (scene-parsing png, instance png) of one image


def read_pair(semantic_file: Path, instance_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 scene-parsing labels and (H, W, 3) uint8 instance RGB of one image."""
    semantic = np.asarray(Image.open(semantic_file))
    instances = np.asarray(Image.open(instance_file))
    if semantic.ndim != 2 or semantic.dtype != np.uint8:
        raise ValueError(f"{semantic_file}: expected a uint8 label png, got {semantic.shape}")
    if semantic.max(initial=0) > ADE150_NUM_CLASSES:
        raise ValueError(f"{semantic_file}: label {semantic.max()} > {ADE150_NUM_CLASSES}")
    if instances.ndim != 3 or instances.shape[2] < 3 or instances.dtype != np.uint8:
        raise ValueError(f"{instance_file}: expected an RGB uint8 png, got {instances.shape}")
    if instances.shape[:2] != semantic.shape:
        raise ValueError(
            f"{instance_file} is {instances.shape[:2]} but {semantic_file} is {semantic.shape}"
        )
    return semantic, instances[..., :3]


def image_pairs(ade: Path, split: str, *, complete: bool = True) -> list[Pair]:
    """The (scene-parsing png, instance png) pairs of a split, by scene-parsing png.

    Args:
        complete: every scene-parsing png must have its instance png (else FileNotFoundError);
            if False, pngs without one are skipped with a warning.
    """
    semantic_dir = require_input(
        ade / "annotations" / split, f"the ADE20K {split} annotations", SEMANTIC_DOWNLOAD
    )
    instance_dir = require_input(
        ade / "annotations_instance" / split, f"the ADE20K {split} instances", INSTANCE_DOWNLOAD
    )
    pairs, unpaired = [], 0
    for semantic_file in sorted(semantic_dir.glob("*.png")):
        instance_file = instance_dir / semantic_file.name
        if complete:
            require_input(
                instance_file, f"the instances of {semantic_file.name}", INSTANCE_DOWNLOAD
            )
        elif not instance_file.is_file():
            unpaired += 1
            continue
        pairs.append((semantic_file, instance_file))
    if unpaired:
        logger.warning(
            "%d pngs of %s have no instance png in %s", unpaired, semantic_dir, instance_dir
        )
    return pairs


def count_thing_labels(pairs: list[Pair]) -> list[int]:
    """The ADE-150 labels (1..150) that the instance classes stand for, by pixel majority."""
    votes = np.zeros(256 * NUM_LABELS, dtype=np.int64)  # (instance class R, label) pixel counts
    for semantic_file, instance_file in progress(pairs, "ADE thing classes"):
        semantic, instances = read_pair(semantic_file, instance_file)
        red = instances[..., 0]  # (H, W) instance class
        inside = red > 0
        codes = red[inside].astype(np.int64) * NUM_LABELS + semantic[inside]  # (P,)
        votes += np.bincount(codes, minlength=votes.size)
    labelled = votes.reshape(256, NUM_LABELS)[:, 1:]  # (256, 150): "other" pixels do not vote
    voting = np.flatnonzero(labelled.sum(axis=1) > 0)  # instance classes with labelled pixels
    return sorted({int(labelled[r].argmax()) + 1 for r in voting})


def panoptic_ids(semantic: np.ndarray, instances: np.ndarray, is_thing: np.ndarray) -> np.ndarray:
    """The segment ids of one image (see the module docstring).

    Args:
        semantic: (H, W) scene-parsing labels, 0..150.
        instances: (H, W, 3) instance RGB.
        is_thing: (151,) bool per scene-parsing label.

    Returns:
        (H, W) uint32 segment ids, 0 = unlabeled.
    """
    ids = np.zeros(semantic.shape, dtype=np.uint32)
    segments_of = np.zeros(NUM_LABELS, dtype=np.int64)  # segments so far per label
    keys = instances[..., 0].astype(np.int32) * 256 + instances[..., 1]  # (H, W): R * 256 + G
    keys[instances[..., 0] == 0] = 0
    for key in np.unique(keys):
        if key == 0:
            continue
        mask = keys == key  # (H, W)
        labels = semantic[mask]
        labels = labels[labels > 0]
        if labels.size == 0:
            continue
        label = int(np.bincount(labels, minlength=NUM_LABELS).argmax())
        if not is_thing[label]:
            continue
        if segments_of[label] >= ID_STRIDE:
            raise ValueError(f"more than {ID_STRIDE} instances of class {label} in one image")
        ids[mask] = label * ID_STRIDE + segments_of[label]
        segments_of[label] += 1
    free = ids == 0  # (H, W): not inside a kept instance
    for label in np.unique(semantic):
        if label > 0 and not is_thing[label]:
            ids[free & (semantic == label)] = label * ID_STRIDE
    return ids


def segments_info(ids: np.ndarray) -> list[dict]:
    """COCO-panoptic ``segments_info`` of (H, W) segment ids (category id = id // 1000)."""
    segments = []
    for segment_id in np.unique(ids):
        if segment_id == 0:
            continue
        ys, xs = np.nonzero(ids == segment_id)
        x0, y0 = int(xs.min()), int(ys.min())
        segments.append(
            {
                "id": int(segment_id),
                "category_id": int(segment_id) // ID_STRIDE,
                "iscrowd": 0,
                "area": int(xs.size),
                "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            }
        )
    return segments


def image_number(path: Path) -> int:
    """The json image id: the number ending the file name (``ADE_val_00000012.png`` -> 12)."""
    number = path.stem.rpartition("_")[2]
    if not number.isdigit():
        raise ValueError(f"{path}: expected a name like ADE_val_00000001.png")
    return int(number)


def thing_flags(ade: Path, root: Path, val_pairs: list[Pair]) -> tuple[np.ndarray, Path]:
    """(151,) is-thing flag per scene-parsing label, counted (or read back) into the categories."""
    pairs = list(val_pairs)
    if (ade / "annotations_instance" / "training").is_dir():
        pairs += image_pairs(ade, "training", complete=False)
    categories_file = root / ADE_PANOPTIC_CATEGORIES
    sources = [path for pair in pairs for path in pair]
    if is_up_to_date(categories_file, *sources):
        categories = read_panoptic_categories(categories_file)
    else:
        things = count_thing_labels(pairs)
        if len(things) != ADE_NUM_THINGS:
            logger.warning(
                "found %d thing classes, not the %d of the ADE20K instance challenge",
                len(things),
                ADE_NUM_THINGS,
            )
        categories = ade_panoptic_categories(things)
        if write_text_if_changed(categories_file, json.dumps(categories, indent=1) + "\n"):
            logger.info("wrote %s", categories_file)
    is_thing = np.zeros(NUM_LABELS, dtype=bool)
    is_thing[1:] = [bool(c["isthing"]) for c in categories]
    logger.info(
        "%d thing and %d stuff classes", is_thing.sum(), ADE150_NUM_CLASSES - is_thing.sum()
    )
    return is_thing, categories_file


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=ADE_VAL_IMAGES), argv)
    root = Path(args.root)
    ade = require_input(root / ADE150_FOLDER, "the ADE20K scene-parsing folder", SEMANTIC_DOWNLOAD)
    image_dir = require_input(
        root / ADE150_IMAGES, "the ADE20K validation images", SEMANTIC_DOWNLOAD
    )
    val_pairs = image_pairs(ade, "validation")
    is_thing, categories_file = thing_flags(ade, root, val_pairs)

    png_dir, semseg_dir = root / ADE_PANOPTIC_PNGS, root / ADE_PANOPTIC_SEMSEG
    images, annotations = [], []
    conversions = Conversions()
    for semantic_file, instance_file in progress(val_pairs, "ADE panoptic validation"):
        png_file, semseg_file = png_dir / semantic_file.name, semseg_dir / semantic_file.name
        sources = (semantic_file, instance_file, categories_file)
        if conversions.skip([png_file, semseg_file], *sources):
            ids = rgb2id(np.asarray(Image.open(png_file).convert("RGB")))  # (H, W)
        else:
            ids = panoptic_ids(*read_pair(semantic_file, instance_file), is_thing)  # (H, W)
            rgb = id2rgb(ids)  # (H, W, 3) uint8
            write_atomically(png_file, lambda name, rgb=rgb: Image.fromarray(rgb).save(name, "PNG"))
            semseg = np.where(ids > 0, ids // ID_STRIDE - 1, PNG_IGNORE).astype(np.uint8)
            write_label_map(semseg, semseg_file)
        stem, image_id = semantic_file.stem, image_number(semantic_file)
        height, width = ids.shape
        images.append(
            {"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width}
        )
        annotations.append(
            {"image_id": image_id, "file_name": png_file.name, "segments_info": segments_info(ids)}
        )

    categories = read_panoptic_categories(categories_file)
    content = {"images": images, "annotations": annotations, "categories": categories}
    json_file = root / ADE_PANOPTIC_JSON
    if write_text_if_changed(json_file, json.dumps(content) + "\n"):
        logger.info("wrote %s", json_file)

    expected = args.expected_val_images
    check_count(image_dir, "*.jpg", expected, "ADE panoptic validation images")
    check_count(semseg_dir, "*.png", expected, "ADE panoptic semantic labels")
    count = check_count(png_dir, "*.png", expected, "ADE panoptic pngs")
    num_things = int(is_thing.sum())
    print(
        f"ADE panoptic validation: {count} images in {json_file}, {num_things} thing and "
        f"{ADE150_NUM_CLASSES - num_things} stuff classes "
        f"({conversions})"
    )


if __name__ == "__main__":
    main()
