"""Build A-847 from ADE20K-full: its vocabulary file and uint16 validation label maps.

    python datasets/prepare_ade20k_847.py [--root $DETECTRON2_DATASETS]

Expects ADE20K-full (ADE20K_2021_17_01.zip, from https://groups.csail.mit.edu/vision/datasets/ADE20K/
after signing up) unpacked in the datasets root:

    ADE20K_2021_17_01/
      index_ade20k.pkl          filename, folder, objectnames, objectPresence (objects x images)
      images/ADE/training/<scene folders>/ADE_train_*.jpg, with <stem>_seg.png beside each
      images/ADE/validation/<scene folders>/ADE_val_*.jpg  2000 images, <stem>_seg.png beside each

A ``_seg.png`` codes the object class of each pixel in red and green: class = R // 10 * 256 + G,
0 = unlabeled and k = ``objectnames[k - 1]``. The A-847 classes are the object classes present
(``objectPresence > 0``) in at least one training image and at least one validation image, in
``objectnames`` order; the real index gives 847. Writes

    ADE20K_2021_17_01/
      maftp_ade847_vocabulary.txt                   0:invalid_class_id, then id:name,synonym,...
                                                    (ids 1..847; objectnames split on ", ")
      images_detectron2/validation/<stem>.jpg       hard links to the images (copies if linking
                                                    fails)
      annotations_detectron2/validation/<stem>.tif  uint16: vocabulary id - 1 (0..846), 65535 =
                                                    unlabeled or a class outside the 847

registered as ``maftp_ade847_val`` (class names read from the vocabulary file). Safe to re-run:
the vocabulary is rewritten only when it changes and up-to-date files are skipped.
"""

import logging
import pickle
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from maft_plus.data.datasets.register_ade import (
    ADE847_FOLDER,
    ADE847_IMAGES,
    ADE847_LABELS,
    ADE847_NUM_CLASSES,
    ADE847_VOCABULARY,
    ADE_VAL_IMAGES,
)
from maft_plus.data.prepare import (
    TIF_IGNORE,
    Conversions,
    argument_parser,
    check_count,
    link_or_copy,
    parse_arguments,
    progress,
    require_input,
    write_label_map,
    write_text_if_changed,
)
from maft_plus.data.vocabulary import INVALID_CLASS_LINE

logger = logging.getLogger(__name__)

DOWNLOAD = "ADE20K_2021_17_01.zip (ADE20K full, groups.csail.mit.edu/vision/datasets/ADE20K)"
INDEX_KEYS = ("filename", "folder", "objectnames", "objectPresence")
SPLITS = ("training", "validation")
MAX_CLASS_CODE = 255 // 10 * 256 + 255  # the largest class a _seg.png can code


def read_index(path: Path) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Read ``index_ade20k.pkl``.

    Returns:
        object_names: O names (synonyms separated by ", ").
        presence: (O, N) instance counts of each object class in each image.
        file_names: the N image file names.
        splits: the split of each image, "training" or "validation".
    """
    with path.open("rb") as f:
        index = pickle.load(f)
    missing = [key for key in INDEX_KEYS if not isinstance(index, dict) or key not in index]
    if missing:
        raise ValueError(
            f"{path}: expected a pickled dict with keys {INDEX_KEYS}, missing {missing}"
        )
    object_names = [str(name) for name in index["objectnames"]]
    file_names = [str(name) for name in index["filename"]]
    folders = [str(folder) for folder in index["folder"]]
    presence = np.asarray(index["objectPresence"])
    if presence.shape != (len(object_names), len(file_names)) or len(folders) != len(file_names):
        raise ValueError(
            f"{path}: objectPresence has shape {presence.shape}, expected (objects, images) = "
            f"({len(object_names)}, {len(file_names)}); {len(folders)} folders"
        )
    splits = [image_split(folder, name) for folder, name in zip(folders, file_names, strict=True)]
    return object_names, presence, file_names, splits


def image_split(folder: str, file_name: str) -> str:
    """ "training" or "validation", from the image's folder (else its ADE_train_/ADE_val_ name)."""
    parts = PurePosixPath(folder.replace("\\", "/")).parts
    for split in SPLITS:
        if split in parts:
            return split
    if file_name.startswith("ADE_val_"):
        return "validation"
    if file_name.startswith("ADE_train_"):
        return "training"
    raise ValueError(f"cannot tell the split of {file_name} in folder {folder}")


def select_classes(presence: np.ndarray, splits: list[str]) -> np.ndarray:
    """Indices (into objectnames) of the classes present in both a training and a val image.

    Args:
        presence: (O, N) per-image instance counts.
        splits: N split names.
    """
    in_split = {}
    for split in SPLITS:
        columns = np.array([s == split for s in splits], dtype=bool)  # (N,)
        in_split[split] = (presence[:, columns] > 0).any(axis=1)  # (O,)
    return np.flatnonzero(in_split["training"] & in_split["validation"])


def vocabulary_text(object_names: list[str], selected: np.ndarray) -> str:
    """The ``id:name,synonym,...`` file of the selected classes (ids 1..K in ``selected`` order)."""
    lines = [INVALID_CLASS_LINE]
    for class_id, index in enumerate(selected, start=1):
        synonyms = [s.strip() for s in object_names[index].split(", ") if s.strip()]
        if not synonyms:
            raise ValueError(f"object class {index + 1} has a blank name {object_names[index]!r}")
        lines.append(f"{class_id}:{','.join(synonyms)}")
    return "\n".join(lines) + "\n"


def class_lookup(num_objects: int, selected: np.ndarray) -> np.ndarray:
    """(C,) uint16 table: _seg.png class code -> contiguous id, 65535 for every other code."""
    lookup = np.full(max(num_objects, MAX_CLASS_CODE) + 1, TIF_IGNORE, dtype=np.uint16)
    lookup[selected + 1] = np.arange(len(selected), dtype=np.uint16)  # code k = objectnames[k-1]
    return lookup


def decode_classes(seg: np.ndarray, source: Path) -> np.ndarray:
    """(H, W, 3) uint8 _seg.png -> (H, W) int class codes, R // 10 * 256 + G."""
    if seg.ndim != 3 or seg.shape[2] < 3 or seg.dtype != np.uint8:
        raise ValueError(f"{source}: expected an RGB uint8 png, got {seg.dtype} {seg.shape}")
    red, green = seg[..., 0].astype(np.int32), seg[..., 1].astype(np.int32)  # (H, W) each
    return red // 10 * 256 + green


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argument_parser(__doc__, expected_val_images=ADE_VAL_IMAGES), argv)
    root = Path(args.root)
    folder = require_input(root / ADE847_FOLDER, "the ADE20K-full folder", DOWNLOAD)
    index_file = require_input(folder / "index_ade20k.pkl", "the ADE20K-full index", DOWNLOAD)
    val_dir = require_input(
        folder / "images" / "ADE" / "validation", "the ADE20K-full validation images", DOWNLOAD
    )

    object_names, presence, file_names, splits = read_index(index_file)
    selected = select_classes(presence, splits)
    logger.info(
        "%d of %d object classes appear in both training and validation images",
        len(selected),
        len(object_names),
    )
    if len(selected) != ADE847_NUM_CLASSES:
        logger.warning(
            "found %d classes in both splits, not the %d of the real ADE20K-full index (%s)",
            len(selected),
            ADE847_NUM_CLASSES,
            index_file,
        )
    vocabulary_file = root / ADE847_VOCABULARY
    if write_text_if_changed(vocabulary_file, vocabulary_text(object_names, selected)):
        logger.info("wrote %s", vocabulary_file)
    lookup = class_lookup(len(object_names), selected)

    images = sorted(val_dir.rglob("*.jpg"))
    stems = [image.stem for image in images]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{val_dir} holds several images with the same name")
    indexed = {
        Path(name).stem
        for name, split in zip(file_names, splits, strict=True)
        if split == "validation"
    }
    if indexed != set(stems):
        logger.warning(
            "%s lists %d validation images, %s holds %d",
            index_file,
            len(indexed),
            val_dir,
            len(stems),
        )

    image_dir, label_dir = root / ADE847_IMAGES, root / ADE847_LABELS
    conversions = Conversions()
    for image in progress(images, "A-847 validation labels"):
        seg_file = require_input(
            image.with_name(f"{image.stem}_seg.png"), f"the class mask of {image.name}", DOWNLOAD
        )
        link_or_copy(image, image_dir / image.name)
        label_target = label_dir / f"{image.stem}.tif"
        if conversions.skip([label_target], seg_file, vocabulary_file):
            continue
        codes = decode_classes(np.asarray(Image.open(seg_file)), seg_file)  # (H, W)
        write_label_map(lookup[codes], label_target)  # (H, W) uint16

    check_count(image_dir, "*.jpg", args.expected_val_images, "A-847 validation images")
    count = check_count(label_dir, "*.tif", args.expected_val_images, "A-847 validation labels")
    print(
        f"A-847 validation: {len(selected)} classes in {vocabulary_file}, {count} label maps in "
        f"{label_dir} ({conversions})"
    )


if __name__ == "__main__":
    main()
