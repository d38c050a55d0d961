"""Build ADE20K panoptic validation (150 classes, 100 things) as COCO-panoptic png + json.

    python datasets/prepare_ade20k_panoptic.py [--root $DETECTRON2_DATASETS]
    python datasets/prepare_ade20k_150.py [--root ...]   # its semantic labels, if not done yet

Expects, in the datasets root, the scene-parsing download (ADEChallengeData2016.zip, see
prepare_ade20k_150.py) with the annotations of the ADE20K instance-segmentation challenge
(annotations_instance.tar, from http://sceneparsing.csail.mit.edu/) unpacked into it:

    ADEChallengeData2016/
      images/validation/ADE_val_*.jpg                  2000 images
      annotations/validation/ADE_val_*.png             uint8: 0 = other, 1..150 = ADE-150 classes
      annotations_instance/validation/ADE_val_*.png    RGB: R = instance category 1..100
                                                       (0 = none), G = instance id (0 = none)

It follows the reference (Mask2Former's) preparation:

- the things are the 100 ADE-150 classes of the fixed instance-category table
  (``maft_plus/data/tables/ade20k_instance_catid_mapping.txt``), the other 50 classes stuff;
- first every stuff class present in the scene-parsing png becomes one segment of all its pixels;
- then every instance (nonzero G) becomes a segment of the class its category R maps to, pasted
  over what is there; every pixel of an instance must have the same R;
- thing-class pixels outside every instance and "other" pixels stay unlabeled;
- a segment's ``area`` and ``bbox`` in the json are those of all its pixels when it was pasted,
  before later instances covered some of them; panopticapi's PQ reads the ground-truth areas
  from the json, so this changes the scores and is kept.

Category ids are the ADE-150 train ids 0..149. A segment's id is (category id + 1) * 1000 + n for
the n-th segment (from 0) of that category in the image. Writes

    ADEChallengeData2016/
      ade20k_panoptic_val/ADE_val_*.png      segment ids as RGB (R + 256 G + 65536 B), 0 = none
      ade20k_panoptic_val.json               COCO panoptic: images (id: the number in the file
                                             name), annotations (segments_info: id, category_id,
                                             iscrowd, area, bbox), categories

registered as ``maftp_ade150_panoptic_val``, whose semantic labels are A-150's
(``prepare_ade20k_150.py``). Safe to re-run: up-to-date pngs are not written again.
"""

import json
import logging
from pathlib import Path

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image

from maft_plus.data.ade_tables import ADE150_NUM_CLASSES, ade150_thing_flags, ade_instance_classes
from maft_plus.data.datasets.register_ade import (
    ADE150_FOLDER,
    ADE150_IMAGES,
    ADE150_LABELS,
    ADE_PANOPTIC_JSON,
    ADE_PANOPTIC_PNGS,
    ADE_VAL_IMAGES,
    ade_panoptic_categories,
)
from maft_plus.data.prepare import (
    Conversions,
    argument_parser,
    check_count,
    parse_arguments,
    progress,
    require_input,
    write_atomically,
    write_text_if_changed,
)

logger = logging.getLogger(__name__)

SEMANTIC_DOWNLOAD = "ADEChallengeData2016.zip (ADE20K scene parsing, sceneparsing.csail.mit.edu)"
INSTANCE_DOWNLOAD = (
    "annotations_instance.tar of the ADE20K instance challenge (sceneparsing.csail.mit.edu), "
    "unpacked into ADEChallengeData2016/"
)
ID_STRIDE = 1000  # segment id = (category id + 1) * ID_STRIDE + n


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


def paste_segments(
    semantic: np.ndarray, instances: np.ndarray, source: str
) -> tuple[np.ndarray, list[dict]]:
    """The panoptic segments of one image, by the rules of the module docstring.

    Args:
        semantic: (H, W) scene-parsing labels, 0..150.
        instances: (H, W, 3) instance RGB.
        source: the instance png, named in errors.

    Returns:
        (H, W) uint32 segment ids (0 = unlabeled) and the ``segments_info`` of every pasted
        segment, in paste order.
    """
    is_thing = ade150_thing_flags()
    instance_classes = ade_instance_classes()
    ids = np.zeros(semantic.shape, dtype=np.uint32)
    segments: list[dict] = []
    count = np.zeros(ADE150_NUM_CLASSES, dtype=np.int64)  # segments so far per category

    def paste(mask: np.ndarray, category: int) -> None:
        if count[category] >= ID_STRIDE:
            raise ValueError(f"{source}: more than {ID_STRIDE} segments of class {category}")
        segment_id = (category + 1) * ID_STRIDE + int(count[category])
        count[category] += 1
        ids[mask] = segment_id
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
        segments.append(
            {
                "id": segment_id,
                "category_id": category,
                "iscrowd": 0,
                "area": int(xs.size),
                "bbox": bbox,
            }
        )

    for label in np.unique(semantic):
        if label > 0 and not is_thing[label - 1]:
            paste(semantic == label, int(label) - 1)
    for instance in np.unique(instances[..., 1]):
        if instance == 0:
            continue
        mask = instances[..., 1] == instance  # (H, W)
        categories = np.unique(instances[..., 0][mask])
        if len(categories) != 1 or int(categories[0]) not in instance_classes:
            raise ValueError(
                f"{source}: instance {instance} has instance categories {categories.tolist()}, "
                f"expected one of 1..{len(instance_classes)}"
            )
        paste(mask, instance_classes[int(categories[0])] - 1)
    return ids, segments


def image_number(path: Path) -> int:
    """The json image id: the number ending the file name (``ADE_val_00000012.png`` -> 12)."""
    number = path.stem.rpartition("_")[2]
    if not number.isdigit():
        raise ValueError(f"{path}: expected a name like ADE_val_00000001.png")
    return int(number)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=ADE_VAL_IMAGES), argv)
    root = Path(args.root)
    ade = require_input(root / ADE150_FOLDER, "the ADE20K scene-parsing folder", SEMANTIC_DOWNLOAD)
    image_dir = require_input(
        root / ADE150_IMAGES, "the ADE20K validation images", SEMANTIC_DOWNLOAD
    )
    semantic_dir = require_input(
        ade / "annotations" / "validation", "the ADE20K validation annotations", SEMANTIC_DOWNLOAD
    )
    instance_dir = require_input(
        ade / "annotations_instance" / "validation",
        "the ADE20K validation instances",
        INSTANCE_DOWNLOAD,
    )

    png_dir = root / ADE_PANOPTIC_PNGS
    images, annotations = [], []
    conversions = Conversions()
    for image in progress(sorted(image_dir.glob("*.jpg")), "ADE panoptic validation"):
        semantic_file = require_input(
            semantic_dir / f"{image.stem}.png", f"the labels of {image.name}", SEMANTIC_DOWNLOAD
        )
        instance_file = require_input(
            instance_dir / f"{image.stem}.png", f"the instances of {image.name}", INSTANCE_DOWNLOAD
        )
        semantic, instances = read_pair(semantic_file, instance_file)
        with Image.open(image) as opened:  # reads the header only
            width, height = opened.size
        if (height, width) != semantic.shape:
            raise ValueError(
                f"{semantic_file} is {semantic.shape} but {image} is {(height, width)}"
            )
        ids, segments = paste_segments(semantic, instances, str(instance_file))
        png_file = png_dir / semantic_file.name
        if not conversions.skip([png_file], semantic_file, instance_file):
            rgb = id2rgb(ids)  # (H, W, 3) uint8
            write_atomically(png_file, lambda name, rgb=rgb: Image.fromarray(rgb).save(name, "PNG"))
        image_id = image_number(image)
        images.append({"id": image_id, "file_name": image.name, "height": height, "width": width})
        annotations.append(
            {"image_id": image_id, "file_name": png_file.name, "segments_info": segments}
        )

    categories = ade_panoptic_categories()
    content = {"images": images, "annotations": annotations, "categories": categories}
    json_file = root / ADE_PANOPTIC_JSON
    if write_text_if_changed(json_file, json.dumps(content) + "\n"):
        logger.info("wrote %s", json_file)

    expected = args.expected_val_images
    check_count(image_dir, "*.jpg", expected, "ADE panoptic validation images")
    count = check_count(png_dir, "*.png", expected, "ADE panoptic pngs")
    num_things = sum(c["isthing"] for c in categories)
    print(
        f"ADE panoptic validation: {count} images in {json_file} and {png_dir}, {num_things} "
        f"thing and {len(categories) - num_things} stuff classes ({conversions})"
    )
    if not (root / ADE150_LABELS).is_dir():
        print(
            f"its semantic labels are A-150's, not made yet: python datasets/prepare_ade20k_150.py "
            f"--root {root}"
        )


if __name__ == "__main__":
    main()
