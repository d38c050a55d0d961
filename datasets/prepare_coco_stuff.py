"""Convert the COCO-Stuff label maps to the 171 contiguous training ids of MAFT+.

    python datasets/prepare_coco_stuff.py [--root $DETECTRON2_DATASETS] [--workers 8]

Expected download, under the datasets root ($DETECTRON2_DATASETS, default datasets/):

    coco/train2017/<stem>.jpg          118287 images   (images.cocodataset.org/zips/train2017.zip)
    coco/val2017/<stem>.jpg              5000 images   (images.cocodataset.org/zips/val2017.zip)
    coco/stuffthingmaps_trainval2017/  (COCO-Stuff: stuffthingmaps_trainval2017.zip, unpacked)
        train2017/<stem>.png           uint8, value = COCO-Stuff id - 1 (ids 1..182), 255 unlabeled
        val2017/<stem>.png

Output:

    coco/stuffthingmaps_detectron2/
        train2017/<stem>.png           uint8, contiguous id 0..170, 255 ignored
        val2017/<stem>.png

Contiguous ids: the 80 COCO thing classes in id order (0..79), then the stuff ids 92..182
(80..170): the class order of the shipped coco_stuff_171 lists. The 11 thing ids COCO does
not use (e.g. 12, street sign) and 255 become 255. As in the reference, a training map left with
no labelled pixel is not written (a stale one is removed), so its image is not trained on
(``maftp_coco_stuff_train`` holds the images that have a map); validation keeps every map. Maps
already converted and newer than their source are skipped, so the script is safe to re-run; it
ends by checking the file counts. (Training maps written by a version of this script that kept
unlabelled maps are up to date and stay: remove ``stuffthingmaps_detectron2/train2017`` to redo.)
"""

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from maft_plus.data.datasets.register_coco import (
    COCO_STUFF_DATASETS,
    IMAGES_SOURCE,
    coco_stuff_class_ids,
    images_dir,
    stuff_labels_dir,
    stuff_source_dir,
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

NUM_SOURCE_IDS = 182  # COCO-Stuff ids 1..182, stored as 0..181
SOURCE = "the COCO-Stuff download (stuffthingmaps_trainval2017.zip, github.com/nightrome/cocostuff)"


def build_lookup() -> np.ndarray:
    """(256,) uint8: stored COCO-Stuff value (id - 1) -> contiguous id, 255 where unused."""
    lookup = np.full(256, PNG_IGNORE, dtype=np.uint8)
    for contiguous_id, stuff_id in enumerate(coco_stuff_class_ids()):
        lookup[stuff_id - 1] = contiguous_id
    return lookup


UP_TO_DATE, WRITTEN, DROPPED = "up to date", "written", "dropped"  # what convert_map did


def convert_map(source: Path, target: Path, lookup: np.ndarray, drop_unlabelled: bool) -> str:
    """Write ``target`` from ``source`` unless up to date.

    Args:
        drop_unlabelled: a map with no labelled pixel is not written (and an older ``target``
            is removed).

    Returns:
        ``UP_TO_DATE``, ``WRITTEN`` or ``DROPPED``.
    """
    if is_up_to_date(target, source):
        return UP_TO_DATE
    with Image.open(source) as image:
        values = np.asarray(image)
    if values.ndim != 2 or values.dtype != np.uint8:
        raise ValueError(
            f"{source}: expected a single-channel uint8 COCO-Stuff map, got {values.dtype} "
            f"{values.shape}"
        )
    counts = np.bincount(values.ravel(), minlength=256)  # (256,) pixels per stored value
    invalid = np.flatnonzero(counts[NUM_SOURCE_IDS:PNG_IGNORE]) + NUM_SOURCE_IDS
    if invalid.size:
        raise ValueError(
            f"{source}: values {invalid.tolist()} are no COCO-Stuff class (expected 0..181 = "
            "ids 1..182, or 255 unlabeled)"
        )
    labels = lookup[values]  # (H, W) uint8
    if drop_unlabelled and (labels == PNG_IGNORE).all():
        target.unlink(missing_ok=True)
        return DROPPED
    write_label_map(labels, target)
    return WRITTEN


def _convert_pair(job: tuple[Path, Path, np.ndarray, bool]) -> str:
    return convert_map(*job)


def prepare_split(root: Path, split: str, workers: int) -> int:
    """Convert every map of ``split``; return how many training maps were dropped."""
    require_input(root / images_dir(split), f"the COCO {split} images", IMAGES_SOURCE)
    source_dir = require_input(root / stuff_source_dir(split), f"COCO-Stuff {split} maps", SOURCE)
    target_dir = root / stuff_labels_dir(split)
    lookup = build_lookup()
    sources = sorted(source_dir.glob("*.png"))
    drop = split == "train2017"
    jobs = [(source, target_dir / source.name, lookup, drop) for source in sources]
    description = f"COCO-Stuff {split}"
    outcomes = map_with_progress(_convert_pair, jobs, workers=workers, description=description)
    written, dropped = outcomes.count(WRITTEN), outcomes.count(DROPPED)
    logger.info("COCO-Stuff %s: wrote %d of %d maps to %s", split, written, len(jobs), target_dir)
    if dropped:
        logger.info(
            "COCO-Stuff %s: %d maps have no labelled pixel and are left out", split, dropped
        )
    return dropped


def main(argv: list[str] | None = None) -> None:
    ready = prepare_coco_splits(
        __doc__,
        argv,
        name="COCO-Stuff",
        prepare_split=prepare_split,
        labels_dir=stuff_labels_dir,
        labels_what="labels",
        dataset_names=COCO_STUFF_DATASETS,
    )
    print(ready)


if __name__ == "__main__":
    main()
