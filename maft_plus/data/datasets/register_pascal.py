"""Register the Pascal benchmarks: PC-59 and PC-459 (Context val), PAS-20 and PAS-21 (VOC2012 val).

The folders below (relative to the datasets root) are written by
``datasets/prepare_pascal_context.py`` and ``datasets/prepare_pascal_voc.py``, which import these
paths from here so that registration and preparation never drift apart.
Registration reads nothing but the PC-459 vocabulary file (if it exists); a dataset whose folders
are missing is still registered, and loading it raises FileNotFoundError naming the folder and the
script that makes it.
"""

import logging
from pathlib import Path

from ..prepare import PNG_IGNORE, TIF_IGNORE
from ..vocabulary import read_builtin_vocabulary, read_vocabulary_file
from .semantic import register_sem_seg

logger = logging.getLogger(__name__)

# Pascal Context (VOC2010 images + the PASCAL-Context full annotations).
VOC2010 = Path("VOCdevkit/VOC2010")
PASCAL_CONTEXT = VOC2010 / "pascal_context"  # trainval/<id>.mat and labels.txt, as unpacked
PC_IMAGES = VOC2010 / "images_detectron2" / "val"  # hard links to JPEGImages/<id>.jpg
PC59_LABELS = VOC2010 / "annotations_detectron2" / "pc59_val"  # <id>.png, uint8
PC459_LABELS = VOC2010 / "annotations_detectron2" / "pc459_val"  # <id>.tif, uint16
PC459_VOCABULARY = PASCAL_CONTEXT / "maftp_pc459_vocabulary.txt"  # id:name, from labels.txt
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
        The four registered names. PC-459's class names come from its vocabulary file, written by
        the prepare script; before that it is registered with no class names.
    """
    root = Path(root)
    register_sem_seg(
        "maftp_pc59_val",
        image_dir=root / PC_IMAGES,
        label_dir=root / PC59_LABELS,
        class_names=read_builtin_vocabulary("pc59"),
        prepare_script=PASCAL_CONTEXT_SCRIPT,
        label_ext="png",
        ignore_label=PNG_IGNORE,
    )
    vocabulary_file = root / PC459_VOCABULARY
    if vocabulary_file.is_file():
        pc459_names = read_vocabulary_file(vocabulary_file)
    else:
        logger.debug(
            "no PC-459 vocabulary at %s; maftp_pc459_val has no class names", vocabulary_file
        )
        pc459_names = []
    register_sem_seg(
        "maftp_pc459_val",
        image_dir=root / PC_IMAGES,
        label_dir=root / PC459_LABELS,
        class_names=pc459_names,
        prepare_script=PASCAL_CONTEXT_SCRIPT,
        label_ext="tif",
        ignore_label=TIF_IGNORE,
        extra_files=[vocabulary_file],
    )
    for name, label_dir, vocabulary in (
        ("maftp_pas20_val", PAS20_LABELS, "voc20"),
        ("maftp_pas21_val", PAS21_LABELS, "voc21"),
    ):
        register_sem_seg(
            name,
            image_dir=root / VOC_IMAGES,
            label_dir=root / label_dir,
            class_names=read_builtin_vocabulary(vocabulary),
            prepare_script=PASCAL_VOC_SCRIPT,
            label_ext="png",
            ignore_label=PNG_IGNORE,
        )
    logger.debug("registered %s under %s", ", ".join(PASCAL_DATASETS), root)
    return list(PASCAL_DATASETS)
