"""Your own dataset: a folder of images, their labels and a class list, registered by one string.

A folder dataset is written as one string of ``key=value`` words (shell quoting allowed), e.g.

    name=my_val images=data/val/images labels=data/val/labels classes=data/classes.txt

so that a config (``DATASETS.FOLDERS``) or a command line registers it without Python. Keys:

- ``name``: the detectron2 dataset name (used in ``DATASETS.TRAIN`` / ``DATASETS.TEST``);
- ``images``: the image folder (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``, ``.webp``);
- ``classes``: a class list in the ``id:name,synonym,...`` format; the k-th class of the file
  (counting from 0, placeholder ``invalid_class_id`` lines left out) is label value k;
- semantic labels: ``labels``, a folder of class-index pngs named like the images (``a.jpg`` ->
  ``a.png``), and ``ignore_label`` (default 255) for unlabeled pixels;
- panoptic labels: ``panoptic_json`` and ``panoptic_pngs``, the COCO panoptic format; the json's
  categories, in their order, are the classes of the class list; ``labels`` is then optional and,
  when given, adds mIoU to PQ (semantic maps of the same classes).

Relative paths are taken from the working directory. Registration checks that the folders exist
and that every image has its label (and every label its image); ``check_folder.py`` reads every
label for a full check. The evaluation and training of such a dataset are those of the benchmarks.
"""

import json
import logging
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..vocabulary import Vocabulary
from ..vocabulary.class_lists import read_class_list
from .panoptic import register_panoptic
from .register_synthetic import unregister
from .semantic import register_sem_seg

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_SUFFIX = ".png"
KEYS = ("name", "images", "classes", "labels", "ignore_label", "panoptic_json", "panoptic_pngs")
PATH_KEYS = ("images", "classes", "labels", "panoptic_json", "panoptic_pngs")


@dataclass(frozen=True)
class FolderDataset:
    """One folder dataset (see the module docstring for the keys)."""

    name: str
    images: Path
    classes: Path
    labels: Path | None = None
    ignore_label: int = 255
    panoptic_json: Path | None = None
    panoptic_pngs: Path | None = None

    @property
    def is_panoptic(self) -> bool:
        return self.panoptic_json is not None

    def spec(self) -> str:
        """The string that :func:`parse_folder_spec` reads back into this dataset."""
        words = [f"name={self.name}"]
        for key in PATH_KEYS:
            value = getattr(self, key)
            if value is not None:
                words.append(f"{key}={value}")
        words.append(f"ignore_label={self.ignore_label}")
        return shlex.join(words)


def parse_folder_spec(spec: str) -> FolderDataset:
    """Read a ``key=value ...`` string into a :class:`FolderDataset`; errors name the spec."""
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ValueError(f"folder dataset {spec!r}: {exc}") from None
    values: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise ValueError(f"folder dataset {spec!r}: expected key=value words, got {word!r}")
        if key not in KEYS:
            raise ValueError(
                f"folder dataset {spec!r}: unknown key {key!r}; keys are {', '.join(KEYS)}"
            )
        if key in values:
            raise ValueError(f"folder dataset {spec!r}: {key} is given twice")
        values[key] = value
    missing = [key for key in ("name", "images", "classes") if key not in values]
    panoptic = [key for key in ("panoptic_json", "panoptic_pngs") if key in values]
    if len(panoptic) == 1:
        missing.append("panoptic_pngs" if "panoptic_json" in values else "panoptic_json")
    if not panoptic and "labels" not in values:
        missing.append("labels (or panoptic_json and panoptic_pngs)")
    if missing:
        raise ValueError(f"folder dataset {spec!r}: missing {', '.join(missing)}")
    ignore_text = values.pop("ignore_label", "255")
    if not ignore_text.isdigit():
        raise ValueError(
            f"folder dataset {spec!r}: ignore_label={ignore_text!r}, expected an integer >= 0"
        )
    paths = {key: Path(value).expanduser() for key, value in values.items() if key != "name"}
    return FolderDataset(name=values["name"], ignore_label=int(ignore_text), **paths)


def image_label_pairs(image_dir: Path, label_dir: Path) -> list[tuple[Path, Path]]:
    """Every image of ``image_dir`` with its label ``label_dir/<stem>.png``, sorted by name.

    Raises:
        ValueError: naming the first images without a label and labels without an image, or two
            images of one stem.
    """
    images: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise ValueError(f"{images[path.stem]} and {path} share a name; keep one of them")
        images[path.stem] = path
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == LABEL_SUFFIX}
    if not images:
        raise ValueError(f"{image_dir} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    unlabelled = sorted(set(images) - set(labels))
    orphans = sorted(set(labels) - set(images))
    if unlabelled or orphans:
        problems = []
        if unlabelled:
            problems.append(
                f"{len(unlabelled)} image(s) without a label in {label_dir}, e.g. "
                f"{images[unlabelled[0]]} has no {label_dir / (unlabelled[0] + LABEL_SUFFIX)}"
            )
        if orphans:
            problems.append(
                f"{len(orphans)} label(s) without an image in {image_dir}, e.g. "
                f"{labels[orphans[0]]}"
            )
        raise ValueError("; ".join(problems))
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def register_folder_dataset(dataset: FolderDataset) -> str:
    """Register ``dataset`` (replacing an earlier registration of its name); return the name."""
    for key in PATH_KEYS:
        path = getattr(dataset, key)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"folder dataset {dataset.name!r}: {key} {path} not found")
    class_list = read_class_list(dataset.classes)
    names = list(class_list.names)
    Vocabulary.from_names(names)  # checks the names now, not at the first batch
    unregister([dataset.name])
    if dataset.is_panoptic:
        _register_panoptic(dataset, names)
    else:
        pairs = image_label_pairs(dataset.images, dataset.labels)
        register_sem_seg(
            dataset.name,
            image_dir=dataset.images,
            label_dir=dataset.labels,
            class_names=names,
            prepare_script="(your own dataset: see DATASETS.FOLDERS in the README)",
            ignore_label=dataset.ignore_label,
            class_ids=range(len(names)),
            records=[
                {"file_name": str(image), "sem_seg_file_name": str(label)} for image, label in pairs
            ],
        )
    logger.info("registered folder dataset %s (%d classes)", dataset.name, len(names))
    return dataset.name


def register_folder_datasets(specs: Iterable[str]) -> list[str]:
    """Register every ``DATASETS.FOLDERS`` string; return the names."""
    datasets = [parse_folder_spec(spec) for spec in specs]
    names = [d.name for d in datasets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"DATASETS.FOLDERS names {', '.join(repeated)} more than once")
    return [register_folder_dataset(d) for d in datasets]


def _register_panoptic(dataset: FolderDataset, names: Sequence[str]) -> None:
    with dataset.panoptic_json.open(encoding="utf-8") as f:
        content = json.load(f)
    categories = content.get("categories") if isinstance(content, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{dataset.panoptic_json}: expected a COCO panoptic json with categories")
    if len(categories) != len(names):
        raise ValueError(
            f"{dataset.panoptic_json} lists {len(categories)} categories but {dataset.classes} "
            f"{len(names)} classes; the class list names the json's categories, in their order"
        )
    register_panoptic(
        dataset.name,
        image_dir=dataset.images,
        panoptic_dir=dataset.panoptic_pngs,
        panoptic_json=dataset.panoptic_json,
        semantic_dir=dataset.labels,
        categories=categories,
        class_names=names,
        class_ids=range(len(names)),
        prepare_script="(your own dataset: see DATASETS.FOLDERS in the README)",
        ignore_label=dataset.ignore_label,
    )
