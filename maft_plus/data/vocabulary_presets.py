"""parse_vocabulary: a preset name, a vocabulary file or free text -> class strings and thing flags.

The one place that turns what a user types ("coco", "ade847", "my_classes.txt",
"cat, kitty; dog; sky") into the ``(names, is_thing)`` pair of ``MAFTPlus.set_vocabulary``.
Presets name the benchmarks' vocabularies: the shipped ones are read from the package, the large
ones (A-847, PC-459, LVIS) from the files their ``datasets/prepare_*.py`` script writes under the
datasets root (``$DETECTRON2_DATASETS``).
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .datasets.builtin import datasets_root
from .datasets.register_ade import ADE847_VOCABULARY, ADE_PANOPTIC_CATEGORIES
from .datasets.register_ade import read_panoptic_categories as read_ade_panoptic_categories
from .datasets.register_pascal import PC459_VOCABULARY
from .vocabulary import read_builtin_vocabulary, read_vocabulary_file

logger = logging.getLogger(__name__)

__all__ = ["LVIS_ANNOTATIONS", "LVIS_VOCABULARY", "PRESETS", "parse_vocabulary"]

# LVIS v1 (relative to the datasets root): the annotation json users download, and the vocabulary
# file datasets/prepare_lvis_vocabulary.py writes from its categories.
LVIS_ANNOTATIONS = Path("lvis") / "lvis_v1_val.json"
LVIS_VOCABULARY = Path("lvis") / "lvis_v1_vocabulary.txt"

COCO_STUFF_NUM_THINGS = 80  # coco_stuff_171 lists COCO's 80 thing classes first, then 91 stuff

Names = list[str]
Flags = list[bool] | None


def _coco() -> tuple[Names, Flags]:
    names = read_builtin_vocabulary("coco_panoptic_133")
    if len(names) != len(COCO_CATEGORIES):
        raise RuntimeError(
            f"coco_panoptic_133 has {len(names)} classes but detectron2's COCO_CATEGORIES "
            f"{len(COCO_CATEGORIES)}: the two disagree"
        )
    return names, [bool(c["isthing"]) for c in COCO_CATEGORIES]


def _coco_stuff() -> tuple[Names, Flags]:
    names = read_builtin_vocabulary("coco_stuff_171")
    return names, [k < COCO_STUFF_NUM_THINGS for k in range(len(names))]


def _ade150() -> tuple[Names, Flags]:
    """ADE-150; thing flags from the panoptic categories file, if that set is prepared."""
    names = read_builtin_vocabulary("ade150")
    categories_file = datasets_root() / ADE_PANOPTIC_CATEGORIES
    if not categories_file.is_file():
        logger.debug("no %s: ADE-150 without thing flags (every class a thing)", categories_file)
        return names, None
    return names, [bool(c["isthing"]) for c in read_ade_panoptic_categories(categories_file)]


def _builtin(name: str) -> Callable[[], tuple[Names, Flags]]:
    return lambda: (read_builtin_vocabulary(name), None)


def _prepared(relative: Path | str, script: str) -> Callable[[], tuple[Names, Flags]]:
    """A vocabulary file under the datasets root, written by ``script``."""

    def read() -> tuple[Names, Flags]:
        path = datasets_root() / relative
        if not path.is_file():
            raise FileNotFoundError(
                f"vocabulary file not found: {path}; make it with: python {script} "
                "(the datasets root is $DETECTRON2_DATASETS, default datasets/)"
            )
        return read_vocabulary_file(path), None

    return read


_LOADERS: dict[str, Callable[[], tuple[Names, Flags]]] = {
    "coco": _coco,
    "coco-stuff": _coco_stuff,
    "ade150": _ade150,
    "ade": _ade150,
    "ade847": _prepared(ADE847_VOCABULARY, "datasets/prepare_ade20k_847.py"),
    "pascal-context": _builtin("pc59"),
    "pc59": _builtin("pc59"),
    "pc459": _prepared(PC459_VOCABULARY, "datasets/prepare_pascal_context.py"),
    "voc": _builtin("voc20"),
    "voc20": _builtin("voc20"),
    "voc21": _builtin("voc21"),
    "lvis": _prepared(LVIS_VOCABULARY, "datasets/prepare_lvis_vocabulary.py"),
}

# The preset names (aliases included), for command-line choices and help texts.
PRESETS: tuple[str, ...] = tuple(_LOADERS)


def _preset_key(text: str) -> str:
    """Case and '-' / '_' do not matter in preset names: "COCO_Stuff" == "coco-stuff"."""
    return text.strip().lower().replace("-", "").replace("_", "")


_BY_KEY = {_preset_key(name): loader for name, loader in _LOADERS.items()}


def parse_vocabulary(spec: str | Sequence[str]) -> tuple[list[str], list[bool] | None]:
    """Turn a vocabulary specification into class strings and optional thing flags.

    A string is, in this order: a preset name (see ``PRESETS``; case and '-' / '_' are ignored);
    the path of an existing vocabulary file (``id:name1,name2`` per line); else free text with
    classes separated by ";" or newlines and synonyms by ",", e.g. ``"cat, kitty; dog; sky"``.
    A sequence of strings holds one class per item, synonyms separated by ",".

    Returns:
        ``names``: K comma-separated synonym strings, one per class, ready for
        ``MAFTPlus.set_vocabulary``; ``is_thing``: K flags, or None (every class a thing) when the
        source does not say.

    Raises:
        ValueError: an empty vocabulary or a class with no name (the message quotes the input).
        FileNotFoundError: a preset whose prepared file is missing (names the file and the script),
            or a single ``*.txt`` name that is no file.
    """
    if isinstance(spec, str):
        return _parse_text(spec)
    if not isinstance(spec, Sequence):
        raise TypeError(
            f"a vocabulary is a preset name, a file path, free text or a list of class strings, "
            f"got {spec!r} ({type(spec).__name__})"
        )
    if not spec:
        raise ValueError("the vocabulary is empty: got an empty list of classes")
    names = []
    for k, item in enumerate(spec):
        if not isinstance(item, str):
            raise TypeError(
                f"vocabulary item {k} must be a string of comma-separated synonyms, got "
                f"{item!r} ({type(item).__name__}) in {spec!r}"
            )
        names.append(_class_string(item, k, spec))
    return names, None


def _parse_text(text: str) -> tuple[list[str], list[bool] | None]:
    if not text.strip():
        raise ValueError(f"the vocabulary is empty: got {text!r}")
    loader = _BY_KEY.get(_preset_key(text))
    if loader is not None:
        return loader()
    path = Path(text.strip()).expanduser()
    if "\n" not in text and _is_file(path):
        return read_vocabulary_file(path), None
    items = text.replace(";", "\n").splitlines()
    if len(items) == 1 and text.strip().lower().endswith(".txt"):  # a mistyped file name
        raise FileNotFoundError(
            f"vocabulary file not found: {path} (and {text.strip()!r} is no preset: "
            f"{', '.join(PRESETS)})"
        )
    names = [
        _class_string(item, k, text)
        for k, item in enumerate(item for item in items if item.strip())
    ]
    if not names:
        raise ValueError(f"the vocabulary {text!r} names no class")
    return names, None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for text that cannot be a path (too long, a NUL character)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _class_string(item: str, index: int, spec: object) -> str:
    """``item`` with its synonyms stripped, repeats and empty pieces dropped: "a, b"."""
    synonyms = dict.fromkeys(piece.strip() for piece in item.split(","))  # ordered, unique
    synonyms.pop("", None)
    if not synonyms:
        raise ValueError(f"class {index} ({item!r}) has no name in the vocabulary {spec!r}")
    return ", ".join(synonyms)
