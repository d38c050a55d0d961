"""Derive semantic label maps (133 contiguous ids) from the COCO-Panoptic annotations.

    python datasets/prepare_coco_panoptic.py [--root $DETECTRON2_DATASETS] [--workers 8]

Expected download, under the datasets root ($DETECTRON2_DATASETS, default datasets/):

    coco/train2017/<stem>.jpg                118287 images (images.cocodataset.org/zips/
    coco/val2017/<stem>.jpg                  5000 images    train2017.zip and val2017.zip)
    coco/annotations/panoptic_train2017.json from panoptic_annotations_trainval2017.zip
    coco/annotations/panoptic_val2017.json   (images.cocodataset.org/annotations/)
    coco/panoptic_train2017/<stem>.png       the zips inside it, annotations/panoptic_train2017.zip
    coco/panoptic_val2017/<stem>.png         and panoptic_val2017.zip, unpacked into coco/

The pngs are COCO panoptic format: a pixel's segment id is R + 256 G + 256^2 B (panopticapi's
rgb2id), 0 = unlabeled, and each segment's category and iscrowd flag are in the json.

Output:

    coco/panoptic_semseg_train2017/<stem>.png  uint8, contiguous id 0..132, 255 ignored
    coco/panoptic_semseg_val2017/<stem>.png

Contiguous ids follow detectron2's COCO_CATEGORIES (the shipped coco_panoptic_133 lists).
Crowd segments keep their class, as in the reference conversion; unlabeled pixels become 255.
Maps newer than their png and json are skipped, so the script is safe to re-run; it ends by
checking the file counts.
"""

import json
import logging
from pathlib import Path

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from maft_plus.data.datasets.register_coco import (
    COCO_PANOPTIC_DATASETS,
    IMAGES_SOURCE,
    coco_panoptic_categories,
    images_dir,
    panoptic_dir,
    panoptic_json,
    panoptic_semseg_dir,
)
from maft_plus.data.label_formats import PNG_IGNORE
from maft_plus.data.prepare import (
    is_up_to_date,
    map_with_progress,
    prepare_coco_splits,
    require_input,
    write_label_map,
)

logger = logging.getLogger(__name__)

SOURCE = (
    "the COCO-Panoptic download (images.cocodataset.org/annotations/"
    "panoptic_annotations_trainval2017.zip; unpack the zips inside it into coco/)"
)


def segment_classes(annotation: dict, contiguous: dict[int, int], json_file: Path) -> dict:
    """Segment id -> contiguous class id of one json annotation (crowd segments included)."""
    classes = {}
    for segment in annotation["segments_info"]:
        category_id = segment["category_id"]
        if category_id not in contiguous:
            raise ValueError(
                f"{json_file}: segment {segment['id']} of {annotation['file_name']} has category "
                f"{category_id}, which is not one of the 133 COCO-Panoptic categories"
            )
        classes[segment["id"]] = contiguous[category_id]
    return classes


def panoptic_to_semantic(
    panoptic_rgb: np.ndarray, classes: dict[int, int], name: str
) -> np.ndarray:
    """(H, W, 3) uint8 panoptic png -> (H, W) uint8 contiguous ids, 255 where unlabeled.

    ``classes`` maps segment ids to contiguous ids; a nonzero segment id in the png but missing
    from ``classes`` means the png and json disagree: a ValueError naming ``name``.
    """
    segment_ids = rgb2id(panoptic_rgb)  # (H, W)
    unique, inverse = np.unique(segment_ids, return_inverse=True)  # (U,), (H*W,) indices
    unknown = [int(i) for i in unique if i != 0 and int(i) not in classes]
    if unknown:
        raise ValueError(f"{name}: segment ids {unknown} are not in the json's segments_info")
    lookup = np.array([classes.get(int(i), PNG_IGNORE) for i in unique], dtype=np.uint8)  # (U,)
    return lookup[inverse].reshape(segment_ids.shape)  # (H, W)


def convert_png(job: tuple[Path, Path, Path, dict[int, int]]) -> bool:
    """Write one semantic map unless up to date; True if it was written."""
    source, target, json_file, classes = job
    require_input(source, "a COCO-Panoptic png listed in the json", SOURCE)
    if is_up_to_date(target, source, json_file):
        return False
    with Image.open(source) as image:
        panoptic_rgb = np.asarray(image.convert("RGB"))  # (H, W, 3)
    write_label_map(panoptic_to_semantic(panoptic_rgb, classes, str(source)), target)
    return True


def prepare_split(root: Path, split: str, workers: int) -> int:
    """Convert every annotation of ``split``; return 0, the images left without a map."""
    require_input(root / images_dir(split), f"the COCO {split} images", IMAGES_SOURCE)
    json_file = require_input(
        root / panoptic_json(split), f"the COCO-Panoptic {split} json", SOURCE
    )
    source_dir = require_input(
        root / panoptic_dir(split), f"the COCO-Panoptic {split} pngs", SOURCE
    )
    target_dir = root / panoptic_semseg_dir(split)
    contiguous = {c["id"]: k for k, c in enumerate(coco_panoptic_categories())}
    with json_file.open(encoding="utf-8") as f:
        annotations = json.load(f)["annotations"]
    jobs = [
        (
            source_dir / annotation["file_name"],
            target_dir / annotation["file_name"],
            json_file,
            segment_classes(annotation, contiguous, json_file),
        )
        for annotation in annotations
    ]
    description = f"COCO-Panoptic {split}"
    written = sum(map_with_progress(convert_png, jobs, workers=workers, description=description))
    logger.info(
        "COCO-Panoptic %s: wrote %d of %d maps to %s", split, written, len(jobs), target_dir
    )
    return 0


def main(argv: list[str] | None = None) -> None:
    ready = prepare_coco_splits(
        __doc__,
        argv,
        name="COCO-Panoptic",
        prepare_split=prepare_split,
        labels_dir=panoptic_semseg_dir,
        labels_what="semantic maps",
        dataset_names=COCO_PANOPTIC_DATASETS,
    )
    print(ready)


if __name__ == "__main__":
    main()
