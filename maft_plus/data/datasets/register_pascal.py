"""Register the Pascal benchmarks: PC-59 and PC-459 (Context val), PAS-20 and PAS-21 (VOC2012 val).

The folders below (relative to the datasets root) are written by
``datasets/prepare_pascal_context.py`` and ``datasets/prepare_pascal_voc.py``, which import these
paths from here so that registration and preparation never drift apart.
Registration reads nothing from the datasets root (the class lists ship with the package); a
dataset whose folders are missing is still registered, and loading it raises FileNotFoundError
naming the folder and the script that makes it.
"""

import logging
from pathlib import Path

from ..label_formats import PNG_IGNORE, TIF_IGNORE
from ..vocabulary.class_lists import builtin_classes
from .semantic import register_sem_seg

logger = logging.getLogger(__name__)

# Pascal Context (VOC2010 images + the PASCAL-Context full annotations).
VOC2010 = Path("VOCdevkit/VOC2010")
PASCAL_CONTEXT = VOC2010 / "pascal_context"  # trainval/<id>.mat and labels.txt, as unpacked
PC_IMAGES = VOC2010 / "images_detectron2" / "val"  # hard links to JPEGImages/<id>.jpg
PC59_LABELS = VOC2010 / "annotations_detectron2" / "pc59_val"  # <id>.png, uint8
PC459_LABELS = VOC2010 / "annotations_detectron2" / "pc459_val"  # <id>.tif, uint16
PASCAL_CONTEXT_SCRIPT = "datasets/prepare_pascal_context.py"

# Pascal VOC 2012 segmentation.
VOC2012 = Path("VOCdevkit/VOC2012")
VOC_IMAGES = VOC2012 / "images_detectron2" / "val"  # hard links to JPEGImages/<id>.jpg
PAS20_LABELS = VOC2012 / "annotations_detectron2" / "pas20_val"  # <id>.png, background ignored
PAS21_LABELS = VOC2012 / "annotations_detectron2" / "pas21_val"  # <id>.png, background = 0
PASCAL_VOC_SCRIPT = "datasets/prepare_pascal_voc.py"

PASCAL_DATASETS = ("maftp_pc59_val", "maftp_pc459_val", "maftp_pas20_val", "maftp_pas21_val")


def register_pascal(root: str | Path) -> list[str]:
    """Register ``maftp_pc59_val``, ``maftp_pc459_val``, ``maftp_pas20_val``, ``maftp_pas21_val``.

    Args:
        root: the datasets root (``$DETECTRON2_DATASETS``) holding ``VOCdevkit/``.

    Returns:
        The four registered names, each with its reference and plain class lists.
    """
    root = Path(root)
    datasets = (
        ("maftp_pc59_val", PC_IMAGES, PC59_LABELS, "pc59", PASCAL_CONTEXT_SCRIPT),
        ("maftp_pc459_val", PC_IMAGES, PC459_LABELS, "pc459", PASCAL_CONTEXT_SCRIPT),
        ("maftp_pas20_val", VOC_IMAGES, PAS20_LABELS, "voc20", PASCAL_VOC_SCRIPT),
        ("maftp_pas21_val", VOC_IMAGES, PAS21_LABELS, "voc21", PASCAL_VOC_SCRIPT),
    )
    for name, image_dir, label_dir, class_list, script in datasets:
        tif = class_list == "pc459"  # more than 255 classes: uint16 labels
        register_sem_seg(
            name,
            image_dir=root / image_dir,
            label_dir=root / label_dir,
            **builtin_classes(class_list),
            prepare_script=script,
            label_ext="tif" if tif else "png",
            ignore_label=TIF_IGNORE if tif else PNG_IGNORE,
        )
    logger.debug("registered %s under %s", ", ".join(PASCAL_DATASETS), root)
    return list(PASCAL_DATASETS)
