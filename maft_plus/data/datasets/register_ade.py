"""Register the ADE20K benchmarks: A-150 and A-847 (semantic) and ADE20K panoptic, validation.

Every path is relative to the datasets root (``$DETECTRON2_DATASETS``) and is made by one of the
``datasets/prepare_ade20k_{150,847,panoptic}.py`` scripts, whose docstrings give the downloads and
the trees. Registration reads no label file, only the small vocabulary / categories files the
scripts write, and works before anything is prepared: loading a dataset whose files are missing
raises FileNotFoundError naming the expected path and the script that makes it.

Contiguous ids: A-150 and ADE panoptic use the ADE-150 order (label k + 1 of the scene-parsing
pngs is class k; json category id k + 1); A-847 uses the order of its vocabulary file.
"""

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..vocabulary import Vocabulary, read_builtin_vocabulary, read_vocabulary_file
from .panoptic import register_panoptic
from .semantic import register_sem_seg

logger = logging.getLogger(__name__)

ADE150_NAME = "maftp_ade150_val"
ADE847_NAME = "maftp_ade847_val"
ADE_PANOPTIC_NAME = "maftp_ade150_panoptic_val"

# The two downloads, as folders of the datasets root.
ADE150_FOLDER = "ADEChallengeData2016"  # scene parsing (+ instance) challenge
ADE847_FOLDER = "ADE20K_2021_17_01"  # ADE20K full

# What the prepare scripts write (and the images registration points to), relative to the root.
ADE150_IMAGES = f"{ADE150_FOLDER}/images/validation"
ADE150_LABELS = f"{ADE150_FOLDER}/annotations_detectron2/validation"
ADE847_IMAGES = f"{ADE847_FOLDER}/images_detectron2/validation"
ADE847_LABELS = f"{ADE847_FOLDER}/annotations_detectron2/validation"
ADE847_VOCABULARY = f"{ADE847_FOLDER}/maftp_ade847_vocabulary.txt"
ADE_PANOPTIC_PNGS = f"{ADE150_FOLDER}/ade20k_panoptic_val"
ADE_PANOPTIC_JSON = f"{ADE150_FOLDER}/ade20k_panoptic_val.json"
ADE_PANOPTIC_SEMSEG = f"{ADE150_FOLDER}/ade20k_panoptic_val_semseg"
ADE_PANOPTIC_CATEGORIES = f"{ADE150_FOLDER}/maftp_ade150_panoptic_categories.json"

ADE150_NUM_CLASSES = 150
ADE847_NUM_CLASSES = 847  # what the real ADE20K-full index gives
ADE_NUM_THINGS = 100  # the classes of the ADE20K instance challenge
ADE_VAL_IMAGES = 2000  # both ADE20K validation sets

_PALETTE_SEED = 150  # fixed seed of the display colours of the panoptic categories


def register_ade(root: str | Path) -> list[str]:
    """Register the three ADE20K validation sets under the datasets ``root``.

    Returns:
        ``maftp_ade150_val``, ``maftp_ade847_val`` and ``maftp_ade150_panoptic_val``.
    """
    root = Path(root)
    ade150_names = read_builtin_vocabulary("ade150")
    register_sem_seg(
        ADE150_NAME,
        image_dir=root / ADE150_IMAGES,
        label_dir=root / ADE150_LABELS,
        class_names=ade150_names,
        prepare_script="datasets/prepare_ade20k_150.py",
    )

    vocabulary_file = root / ADE847_VOCABULARY
    if vocabulary_file.is_file():
        ade847_names = read_vocabulary_file(vocabulary_file)
    else:
        ade847_names = []  # loading raises FileNotFoundError naming the vocabulary file
        logger.debug("no A-847 vocabulary at %s", vocabulary_file)
    register_sem_seg(
        ADE847_NAME,
        image_dir=root / ADE847_IMAGES,
        label_dir=root / ADE847_LABELS,
        class_names=ade847_names,
        prepare_script="datasets/prepare_ade20k_847.py",
        label_ext="tif",
        ignore_label=65535,
        extra_files=[vocabulary_file],
    )

    categories_file = root / ADE_PANOPTIC_CATEGORIES
    if categories_file.is_file():
        categories = read_panoptic_categories(categories_file)
    else:
        if (root / ADE_PANOPTIC_JSON).exists():
            logger.warning(
                "%s is missing, so every ADE panoptic class counts as stuff; re-run "
                "datasets/prepare_ade20k_panoptic.py",
                categories_file,
            )
        categories = ade_panoptic_categories(thing_labels=())
    register_panoptic(
        ADE_PANOPTIC_NAME,
        image_dir=root / ADE150_IMAGES,
        panoptic_dir=root / ADE_PANOPTIC_PNGS,
        panoptic_json=root / ADE_PANOPTIC_JSON,
        semantic_dir=root / ADE_PANOPTIC_SEMSEG,
        categories=categories,
        class_names=ade150_names,
        prepare_script="datasets/prepare_ade20k_panoptic.py",
        colors=[c["color"] for c in categories],
    )
    names = [ADE150_NAME, ADE847_NAME, ADE_PANOPTIC_NAME]
    logger.info("registered %s from %s", ", ".join(names), root)
    return names


def ade_panoptic_categories(thing_labels: Iterable[int]) -> list[dict]:
    """The 150 COCO-panoptic categories of ADE20K panoptic, in ADE-150 order.

    Args:
        thing_labels: the ADE-150 labels (1..150, the values of the scene-parsing pngs) that are
            things; every other class is stuff.

    Returns:
        150 dicts ``{"id": k + 1, "name", "isthing": 0/1, "color": [r, g, b]}``; the name is the
        first synonym of ADE-150 class k.
    """
    things = set(thing_labels)
    outside = sorted(t for t in things if not 1 <= t <= ADE150_NUM_CLASSES)
    if outside:
        raise ValueError(f"ADE-150 labels are 1..{ADE150_NUM_CLASSES}, got thing labels {outside}")
    vocabulary = Vocabulary.from_names(read_builtin_vocabulary("ade150"))
    palette = np.random.default_rng(_PALETTE_SEED).integers(0, 256, (ADE150_NUM_CLASSES, 3))
    return [
        {
            "id": k + 1,
            "name": name,
            "isthing": int(k + 1 in things),
            "color": [int(c) for c in palette[k]],
        }
        for k, name in enumerate(vocabulary.class_names)
    ]


def read_panoptic_categories(path: str | Path) -> list[dict]:
    """The categories file written by ``prepare_ade20k_panoptic.py``, checked against ADE-150."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        categories = json.load(f)
    ids = [c.get("id") for c in categories] if isinstance(categories, list) else None
    if ids != list(range(1, ADE150_NUM_CLASSES + 1)):
        raise ValueError(
            f"{path}: expected a json list of the {ADE150_NUM_CLASSES} ADE-150 categories with "
            "ids 1..150 in order; re-run datasets/prepare_ade20k_panoptic.py"
        )
    return categories
