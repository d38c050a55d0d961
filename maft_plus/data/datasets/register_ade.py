"""Register the ADE20K benchmarks: A-150 and A-847 (semantic) and ADE20K panoptic, validation.

Every path is relative to the datasets root (``$DETECTRON2_DATASETS``) and is made by one of the
``datasets/prepare_ade20k_{150,847,panoptic}.py`` scripts, whose docstrings give the downloads and
the trees. Registration reads no file of the datasets root: class names, ids and thing flags ship
with the package (``class_lists.py``, ``ade_tables.py``), so every set is registered with its
reference vocabulary before anything is prepared; loading a dataset whose files are missing raises
FileNotFoundError naming the expected path and the script that makes it.

Contiguous ids: A-150 and ADE panoptic use the ADE-150 order (label k + 1 of the scene-parsing
pngs is class k; ADE panoptic json category id k); A-847 the fixed object-code table of
``ade_tables.py`` (train id k = code ``ade847_object_codes()[k]``).
"""

import logging
from pathlib import Path

import numpy as np

from ..ade_tables import ADE150_NUM_CLASSES, ade150_thing_flags
from ..label_formats import TIF_IGNORE
from ..vocabulary.class_lists import builtin_class_list, builtin_classes
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
ADE_PANOPTIC_PNGS = f"{ADE150_FOLDER}/ade20k_panoptic_val"
ADE_PANOPTIC_JSON = f"{ADE150_FOLDER}/ade20k_panoptic_val.json"

ADE_VAL_IMAGES = 2000  # both ADE20K validation sets
ADE150_SCRIPT = "datasets/prepare_ade20k_150.py"

_PALETTE_SEED = 150  # fixed seed of the display colours of the panoptic categories


def register_ade(root: str | Path) -> list[str]:
    """Register the three ADE20K validation sets under the datasets ``root``.

    Returns:
        ``maftp_ade150_val``, ``maftp_ade847_val`` and ``maftp_ade150_panoptic_val``.
    """
    root = Path(root)
    register_sem_seg(
        ADE150_NAME,
        image_dir=root / ADE150_IMAGES,
        label_dir=root / ADE150_LABELS,
        **builtin_classes("ade150"),
        is_thing=ade150_thing_flags(),
        prepare_script=ADE150_SCRIPT,
    )
    register_sem_seg(
        ADE847_NAME,
        image_dir=root / ADE847_IMAGES,
        label_dir=root / ADE847_LABELS,
        **builtin_classes("ade847"),
        prepare_script="datasets/prepare_ade20k_847.py",
        label_ext="tif",
        ignore_label=TIF_IGNORE,
    )
    categories = ade_panoptic_categories()
    register_panoptic(
        ADE_PANOPTIC_NAME,
        image_dir=root / ADE150_IMAGES,
        panoptic_dir=root / ADE_PANOPTIC_PNGS,
        panoptic_json=root / ADE_PANOPTIC_JSON,
        semantic_dir=root / ADE150_LABELS,  # A-150's labels, as the reference scores it
        categories=categories,
        **builtin_classes("ade150"),
        prepare_script="datasets/prepare_ade20k_panoptic.py",
        semantic_script=ADE150_SCRIPT,
        colors=[c["color"] for c in categories],
    )
    names = [ADE150_NAME, ADE847_NAME, ADE_PANOPTIC_NAME]
    logger.info("registered %s from %s", ", ".join(names), root)
    return names


def ade_panoptic_categories() -> list[dict]:
    """The 150 COCO-panoptic categories of ADE20K panoptic, in ADE-150 order.

    Returns:
        150 dicts ``{"id": k, "name", "isthing": 0/1, "color": [r, g, b]}`` for ADE-150 class k
        (0..149, the reference's category ids); the name is the plain class string, the things
        are the 100 classes of the ADE20K instance challenge.
    """
    names = builtin_class_list("ade150", "plain").names
    palette = np.random.default_rng(_PALETTE_SEED).integers(0, 256, (ADE150_NUM_CLASSES, 3))
    return [
        {"id": k, "name": name, "isthing": int(thing), "color": [int(c) for c in palette[k]]}
        for k, (name, thing) in enumerate(zip(names, ade150_thing_flags(), strict=True))
    ]
