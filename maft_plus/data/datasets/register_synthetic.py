"""Register the synthetic dataset (:mod:`maft_plus.data.synthetic`) in detectron2's catalogs.

Four datasets per root: ``{prefix}_sem_seg_{train,val}`` (semantic pngs, through detectron2's
``load_sem_seg``) and ``{prefix}_panoptic_{train,val}`` (COCO-panoptic png + json, through
detectron2's ``load_coco_panoptic_json``, plus the derived semantic png and the image size).

Contiguous ids 0..K-1: the K classes in vocabulary-file order, which is also the order of the
json categories (category id k + 1 here). Both ``stuff_classes`` and ``thing_classes`` list all K
classes so either can be indexed by a contiguous id (detectron2's Visualizer does), ``is_thing``
says which are things, and ``stuff_dataset_id_to_contiguous_id`` covers all K classes (as the
semantic evaluator expects) while ``thing_dataset_id_to_contiguous_id`` covers only the things.
"""

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from ..synthetic import IGNORE_LABEL, SPLITS, VOCABULARY_FILE, SplitPaths
from ..vocabulary import Vocabulary
from ..vocabulary.class_lists import read_class_list
from .panoptic import register_panoptic

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "maftp_synthetic"


def register_synthetic(root: str | Path, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Register the semantic and panoptic train/val datasets of a synthetic dataset at ``root``.

    Names already registered are removed first, so calling this again (e.g. with a new root) is
    harmless. Files are checked now; dataset dicts are built lazily by ``DatasetCatalog.get``.

    Returns:
        The four registered names: ``{prefix}_sem_seg_train``, ``{prefix}_sem_seg_val``,
        ``{prefix}_panoptic_train``, ``{prefix}_panoptic_val``.
    """
    root = Path(root)
    _require(root, "the synthetic dataset root")
    vocabulary_file = root / VOCABULARY_FILE
    _require(vocabulary_file, "the vocabulary file")
    class_list = read_class_list(vocabulary_file)
    class_names = list(class_list.names)
    split_paths = {split: SplitPaths.under(root, split) for split in SPLITS}
    for paths in split_paths.values():
        for path, what in (
            (paths.images, "the image folder"),
            (paths.sem_seg, "the semantic label folder"),
            (paths.panoptic, "the panoptic png folder"),
            (paths.panoptic_json, "the panoptic json"),
            (paths.panoptic_semseg, "the panoptic-derived semantic label folder"),
        ):
            _require(path, what)
    categories = _read_categories(split_paths["train"].panoptic_json, len(class_names))
    is_thing = [bool(c["isthing"]) for c in categories]
    vocabulary = Vocabulary.from_names(class_names, is_thing)  # validates the names
    json_names = tuple(c["name"] for c in categories)
    if vocabulary.class_names != json_names:
        raise ValueError(
            f"{vocabulary_file} names {vocabulary.class_names} but "
            f"{split_paths['train'].panoptic_json} names {json_names}; rewrite the dataset with "
            f"write_synthetic_dataset"
        )
    classes = [", ".join(synonyms) for synonyms in vocabulary.class_synonyms]
    colours = [list(c["color"]) for c in categories]

    names = []
    for split, paths in split_paths.items():
        sem_seg_name = f"{prefix}_sem_seg_{split}"
        unregister([sem_seg_name])
        DatasetCatalog.register(
            sem_seg_name,
            lambda paths=paths: load_sem_seg(
                str(paths.sem_seg), str(paths.images), gt_ext="png", image_ext="jpg"
            ),
        )
        MetadataCatalog.get(sem_seg_name).set(
            stuff_classes=classes,
            stuff_colors=colours,
            is_thing=is_thing,
            image_root=str(paths.images),
            sem_seg_root=str(paths.sem_seg),
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            class_ids=list(class_list.ids),
        )
        names.append(sem_seg_name)

    for split, paths in split_paths.items():
        panoptic_name = f"{prefix}_panoptic_{split}"
        register_panoptic(
            panoptic_name,
            image_dir=paths.images,
            panoptic_dir=paths.panoptic,
            panoptic_json=paths.panoptic_json,
            semantic_dir=paths.panoptic_semseg,
            categories=categories,
            class_names=classes,
            class_ids=class_list.ids,
            prepare_script="datasets/prepare_synthetic.py",
            ignore_label=IGNORE_LABEL,
            colors=colours,
        )
        names.append(panoptic_name)
    logger.info("registered %s from %s", ", ".join(names), root)
    return names


def unregister(names: Iterable[str]) -> None:
    """Remove datasets from both catalogs; names not registered are skipped."""
    registered = set(DatasetCatalog.list())
    for name in names:
        if name in registered:
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


def _read_categories(panoptic_json: Path, num_classes: int) -> list[dict]:
    with panoptic_json.open(encoding="utf-8") as f:
        categories = json.load(f)["categories"]
    if len(categories) != num_classes:
        raise ValueError(
            f"{panoptic_json} lists {len(categories)} categories but the vocabulary file has "
            f"{num_classes} classes; rewrite the dataset with write_synthetic_dataset"
        )
    return categories


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found: {path}; write the synthetic dataset first with "
            f"maft_plus.data.synthetic.write_synthetic_dataset(root)"
        )
