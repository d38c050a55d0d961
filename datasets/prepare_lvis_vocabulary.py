"""Write the LVIS v1 vocabulary file (1203 classes with synonyms) for the "lvis" preset.

    python datasets/prepare_lvis_vocabulary.py [--root $DETECTRON2_DATASETS]

Expects the LVIS v1 validation annotations (lvis_v1_val.json.zip from https://www.lvisdataset.org,
unpacked) in the datasets root:

    lvis/lvis_v1_val.json       only its "categories" are read: id, name, synonyms

and writes

    lvis/lvis_v1_vocabulary.txt   0:invalid_class_id, then id:name,synonym,... (ids 1..K in LVIS
                                  id order; underscores become spaces, "aerosol_can" ->
                                  "aerosol can")

which ``parse_vocabulary("lvis")`` (and so the predictor and demos) reads. Safe to re-run: the
file is written atomically and only when it changes.
"""

import argparse
import json
import logging
from pathlib import Path

from maft_plus.data.datasets import datasets_root
from maft_plus.data.prepare import parse_arguments, require_input, write_text_if_changed
from maft_plus.data.vocabulary.class_lists import INVALID_CLASS_LINE
from maft_plus.data.vocabulary.presets import LVIS_ANNOTATIONS, LVIS_VOCABULARY

logger = logging.getLogger(__name__)

DOWNLOAD = "lvis_v1_val.json.zip (LVIS v1 validation annotations, https://www.lvisdataset.org)"
LVIS_V1_NUM_CLASSES = 1203


def class_synonyms(category: dict) -> list[str]:
    """The synonyms of one LVIS category, its name first; underscores and commas become spaces."""
    raw = [category.get("name", ""), *category.get("synonyms", [])]
    cleaned = (" ".join(str(s).replace("_", " ").replace(",", " ").split()) for s in raw)
    synonyms = list(dict.fromkeys(s for s in cleaned if s))  # ordered, unique
    if not synonyms:
        raise ValueError(f"LVIS category {category.get('id')} has no name: {category!r}")
    return synonyms


def vocabulary_text(categories: list[dict]) -> str:
    """The ``id:name,synonym,...`` file of the categories, contiguous ids 1..K in LVIS id order."""
    ordered = sorted(categories, key=lambda c: c["id"])
    lines = [INVALID_CLASS_LINE]
    lines += [f"{k}:{','.join(class_synonyms(c))}" for k, c in enumerate(ordered, start=1)]
    return "\n".join(lines) + "\n"


def read_categories(path: Path) -> list[dict]:
    """The "categories" list of an LVIS annotation json, checked for ids."""
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{path}: expected a json object with a non-empty 'categories' list")
    for category in categories:
        if not isinstance(category, dict) or not isinstance(category.get("id"), int):
            raise ValueError(f"{path}: every category needs an integer 'id', got {category!r}")
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: repeated category ids")
    return categories


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        default=str(datasets_root()),
        help="the datasets root ($DETECTRON2_DATASETS, default datasets/)",
    )
    args = parse_arguments(parser, argv)
    root = Path(args.root)
    annotations = require_input(root / LVIS_ANNOTATIONS, "the LVIS v1 annotations", DOWNLOAD)
    categories = read_categories(annotations)
    if len(categories) != LVIS_V1_NUM_CLASSES:
        logger.warning(
            "%s lists %d categories, not the %d of LVIS v1",
            annotations,
            len(categories),
            LVIS_V1_NUM_CLASSES,
        )
    text = vocabulary_text(categories)
    target = root / LVIS_VOCABULARY
    written = write_text_if_changed(target, text)
    num_synonyms = sum(len(class_synonyms(c)) for c in categories)
    state = "wrote" if written else "already up to date:"
    print(f"LVIS vocabulary: {state} {target} ({len(categories)} classes, {num_synonyms} synonyms)")


if __name__ == "__main__":
    main()
