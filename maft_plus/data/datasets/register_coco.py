"""Register the COCO training sets: COCO-Stuff (171 classes) and COCO-Panoptic (133 classes).

The folders below (relative to the datasets root) hold the COCO downloads and what
``datasets/prepare_coco_stuff.py`` and ``datasets/prepare_coco_panoptic.py`` derive from them;
the scripts import these paths and class ids from here so the two never drift. Registration reads
no label file: a dataset whose folders are missing is still registered, and loading it raises
FileNotFoundError naming the folder and the script that makes it.
"""

import logging
from pathlib import Path

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from ..label_formats import PNG_IGNORE
from ..vocabulary.class_lists import builtin_class_list, builtin_classes
from .panoptic import register_panoptic
from .semantic import register_sem_seg

logger = logging.getLogger(__name__)

COCO = Path("coco")
SPLITS = {"train": "train2017", "val": "val2017"}  # dataset-name suffix -> COCO split folder
EXPECTED_IMAGES = {"train2017": 118287, "val2017": 5000}  # images of the real COCO 2017 splits
IMAGES_SOURCE = "the COCO download (images.cocodataset.org/zips/<split>.zip)"
COCO_STUFF_SCRIPT = "datasets/prepare_coco_stuff.py"
COCO_PANOPTIC_SCRIPT = "datasets/prepare_coco_panoptic.py"

COCO_STUFF_DATASETS = ("maftp_coco_stuff_train", "maftp_coco_stuff_val")
COCO_PANOPTIC_DATASETS = ("maftp_coco_panoptic_train", "maftp_coco_panoptic_val")

# COCO-Stuff ids 92..182 are the stuff classes; the things are COCO's 80 detection classes, whose
# ids lie in 1..91 with 11 ids unused.
COCO_STUFF_STUFF_IDS = tuple(range(92, 183))


def images_dir(split: str) -> Path:
    """``coco/<split>``: the COCO images ``<stem>.jpg`` (e.g. ``train2017.zip`` unpacked)."""
    return COCO / split


def stuff_source_dir(split: str) -> Path:
    """The downloaded COCO-Stuff maps ``<stem>.png`` (value = COCO-Stuff id - 1, 255 unlabeled)."""
    return COCO / "stuffthingmaps_trainval2017" / split


def stuff_labels_dir(split: str) -> Path:
    """The converted COCO-Stuff maps ``<stem>.png``: contiguous ids 0..170, 255 ignored."""
    return COCO / "stuffthingmaps_detectron2" / split


def panoptic_json(split: str) -> Path:
    """The downloaded COCO-Panoptic json of ``split``."""
    return COCO / "annotations" / f"panoptic_{split}.json"


def panoptic_dir(split: str) -> Path:
    """The downloaded COCO-Panoptic pngs ``<stem>.png`` (segment id = rgb2id of the colour)."""
    return COCO / f"panoptic_{split}"


def panoptic_semseg_dir(split: str) -> Path:
    """The semantic maps ``<stem>.png`` derived from the panoptic pngs: ids 0..132, 255 ignored."""
    return COCO / f"panoptic_semseg_{split}"


def coco_stuff_class_ids() -> list[int]:
    """The 171 COCO-Stuff ids in use, in contiguous-id order: the 80 things, then 92..182.

    They are the ids of the shipped ``coco_stuff_171`` class lists.
    """
    return list(builtin_class_list("coco_stuff_171").ids)


def coco_panoptic_categories() -> list[dict]:
    """The 133 COCO-Panoptic categories (``id``, ``name``, ``isthing``, ``color``) in
    contiguous-id order, which is the class order of the shipped ``coco_panoptic_133``."""
    return [dict(c) for c in COCO_CATEGORIES]


def register_coco(root: str | Path) -> list[str]:
    """Register COCO-Stuff and COCO-Panoptic train and val under the datasets root ``root``.

    Returns:
        ``maftp_coco_stuff_train``, ``maftp_coco_stuff_val`` (semantic, 171 classes: 80 things
        then 91 stuff) and ``maftp_coco_panoptic_train``, ``maftp_coco_panoptic_val`` (panoptic
        dicts plus ``sem_seg_file_name``, 133 classes).
    """
    root = Path(root)
    stuff = builtin_classes("coco_stuff_171")
    num_things = len(stuff["class_ids"]) - len(COCO_STUFF_STUFF_IDS)
    is_thing = [k < num_things for k in range(len(stuff["class_ids"]))]
    for name, split in zip(COCO_STUFF_DATASETS, SPLITS.values(), strict=True):
        register_sem_seg(
            name,
            image_dir=root / images_dir(split),
            label_dir=root / stuff_labels_dir(split),
            **stuff,
            prepare_script=COCO_STUFF_SCRIPT,
            image_ext="jpg",
            label_ext="png",
            ignore_label=PNG_IGNORE,
            is_thing=is_thing,
            labelled_images_only=split == SPLITS["train"],  # see prepare_coco_stuff.py
        )

    categories = coco_panoptic_categories()
    for name, split in zip(COCO_PANOPTIC_DATASETS, SPLITS.values(), strict=True):
        register_panoptic(
            name,
            image_dir=root / images_dir(split),
            panoptic_dir=root / panoptic_dir(split),
            panoptic_json=root / panoptic_json(split),
            semantic_dir=root / panoptic_semseg_dir(split),
            categories=categories,
            **builtin_classes("coco_panoptic_133"),
            prepare_script=COCO_PANOPTIC_SCRIPT,
            ignore_label=PNG_IGNORE,
            colors=[c["color"] for c in categories],
        )
    names = [*COCO_STUFF_DATASETS, *COCO_PANOPTIC_DATASETS]
    logger.debug("registered %s under %s", ", ".join(names), root)
    return names
