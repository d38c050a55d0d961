"""A full check of a folder dataset (``register_folder.py``) before hours are spent on it.

Every label is read once: a semantic label must be a single-channel png of the image's size
holding only class ids 0..K-1 and the ignore value; a panoptic png must be an RGB png of the
image's size whose segment ids are those of its json entry, of categories the json lists. Images
are only opened for their size (the header). The problems found are reported together, each
naming its file, so that one pass shows what to fix.
"""

import json
import logging
from pathlib import Path

import numpy as np
from panopticapi.utils import rgb2id
from PIL import Image

from ..vocabulary.class_lists import read_class_list
from .register_folder import FolderDataset, image_label_pairs

logger = logging.getLogger(__name__)

MAX_LISTED = 10  # problems named in the error; the count says how many there are


class FolderDatasetError(ValueError):
    """A folder dataset with problems; ``problems`` lists every one, each naming its file."""

    def __init__(self, dataset: FolderDataset, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n  ".join(problems[:MAX_LISTED])
        hidden = len(problems) - MAX_LISTED
        more = f"\n  ... and {hidden} more" if hidden > 0 else ""
        super().__init__(
            f"folder dataset {dataset.name!r}: {len(problems)} problem(s):\n  {listed}{more}"
        )


def check_folder_dataset(dataset: FolderDataset) -> int:
    """Check every file of ``dataset``; return the number of images.

    Raises:
        FolderDatasetError: listing every problem found (unreadable files, sizes that differ,
            label ids outside the class list, images without a label, ...).
        ValueError, FileNotFoundError: a missing folder or class list, or unpaired files.
    """
    num_classes = len(read_class_list(dataset.classes))
    problems: list[str] = []
    num_images = 0
    if dataset.labels is not None:
        pairs = image_label_pairs(dataset.images, dataset.labels)
        num_images = len(pairs)
        for image, label in pairs:
            problems += _semantic_problems(image, label, num_classes, dataset.ignore_label)
    if dataset.is_panoptic:
        num_images, found = _panoptic_problems(dataset, num_classes)
        problems += found
    if problems:
        raise FolderDatasetError(dataset, problems)
    logger.info("folder dataset %s: %d images checked", dataset.name, num_images)
    return num_images


def _image_size(image: Path) -> tuple[int, int] | str:
    """(H, W) from the header, or the reason it cannot be read."""
    try:
        with Image.open(image) as img:
            return img.height, img.width
    except (OSError, ValueError) as exc:
        return f"image {image} cannot be read: {exc}"


def _size_problems(
    what: str, shape: tuple[int, ...], image: Path, size: tuple[int, int]
) -> list[str]:
    """A problem when a label of ``shape`` (H, W) does not match its image's ``size`` (H, W)."""
    if tuple(shape) == tuple(size):
        return []
    return [f"{what} is {shape[1]}x{shape[0]} (WxH) but its image {image} is {size[1]}x{size[0]}"]


def _semantic_problems(image: Path, label: Path, num_classes: int, ignore: int) -> list[str]:
    size = _image_size(image)
    if isinstance(size, str):
        return [size]
    try:
        with Image.open(label) as png:
            if png.mode not in ("L", "P", "I", "I;16"):
                return [
                    f"label {label} is a {png.mode} png; expected one channel of class ids "
                    "(mode L or P, or 16-bit for more than 255 classes)"
                ]
            ids = np.array(png)  # (H, W) class ids (palette indices for P)
    except (OSError, ValueError) as exc:
        return [f"label {label} cannot be read: {exc}"]
    problems = _size_problems(f"label {label}", ids.shape, image, size)
    values = np.unique(ids)
    bad = values[(values != ignore) & (values >= num_classes)]
    if bad.size:
        problems.append(
            f"label {label} holds ids {bad.tolist()[:8]} outside the class list "
            f"(0..{num_classes - 1}, ignore {ignore})"
        )
    return problems


def _panoptic_problems(dataset: FolderDataset, num_classes: int) -> tuple[int, list[str]]:
    with dataset.panoptic_json.open(encoding="utf-8") as f:
        content = json.load(f)
    source = dataset.panoptic_json
    try:
        categories = {c["id"] for c in content["categories"]}
        images = {im["id"]: im for im in content["images"]}
        annotations = content["annotations"]
    except (KeyError, TypeError) as exc:
        return 0, [f"{source}: not a COCO panoptic json (categories, images, annotations): {exc}"]
    problems = []
    if len(categories) != num_classes:
        problems.append(
            f"{source} lists {len(categories)} categories, {dataset.classes} {num_classes} classes"
        )
    annotated = {a.get("image_id") for a in annotations}
    problems += [
        f"image {dataset.images / im['file_name']} (id {image_id}) has no annotation in {source}"
        for image_id, im in images.items()
        if image_id not in annotated
    ]
    for annotation in annotations:
        problems += _panoptic_entry_problems(dataset, annotation, images, categories)
    return len(annotations), problems


def _panoptic_entry_problems(
    dataset: FolderDataset, annotation: dict, images: dict, categories: set[int]
) -> list[str]:
    png_path = dataset.panoptic_pngs / annotation.get("file_name", "")
    image_entry = images.get(annotation.get("image_id"))
    if image_entry is None:
        return [f"{png_path}: its image_id {annotation.get('image_id')} is not in the json images"]
    image = dataset.images / image_entry["file_name"]
    size = _image_size(image)
    if isinstance(size, str):
        return [size]
    try:
        with Image.open(png_path) as png:
            ids = rgb2id(np.array(png.convert("RGB")))  # (H, W) segment ids, 0 = unlabeled
    except (OSError, ValueError) as exc:
        return [f"panoptic png {png_path} cannot be read: {exc}"]
    problems = _size_problems(f"panoptic png {png_path}", ids.shape, image, size)
    segments = annotation.get("segments_info", [])
    unknown = sorted({s["category_id"] for s in segments} - categories)
    if unknown:
        problems.append(f"panoptic png {png_path}: segments of categories {unknown} not in json")
    missing = sorted(set(np.unique(ids).tolist()) - {0} - {s["id"] for s in segments})
    if missing:
        problems.append(
            f"panoptic png {png_path} holds segment ids {missing[:8]} its json entry does not list"
        )
    return problems
