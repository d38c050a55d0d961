"""parse_vocabulary: a preset name, a vocabulary file or free text -> class strings and thing flags.

The one place that turns what a user types ("coco", "ade847", "my_classes.txt",
"cat, kitty; dog; sky") into the ``(names, is_thing)`` pair of ``MAFTPlus.set_vocabulary``.
Presets name the benchmarks' vocabularies, read from the package: by default the reference
(prompt-engineered) lists the released checkpoints were scored with, and with a ``-plain`` suffix
(``ade150-plain``) the datasets' own names (``class_lists.py``). LVIS is read from the file
``datasets/prepare_lvis_vocabulary.py`` writes under the datasets root (``$DETECTRON2_DATASETS``).
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from ..ade_tables import ade150_thing_flags
from ..paths import datasets_root
from .class_lists import builtin_class_list, read_vocabulary_file

logger = logging.getLogger(__name__)

__all__ = ["LVIS_ANNOTATIONS", "LVIS_VOCABULARY", "PRESETS", "parse_vocabulary"]

# LVIS v1 (relative to the datasets root): the annotation json users download, and the vocabulary
# file datasets/prepare_lvis_vocabulary.py writes from its categories.
LVIS_ANNOTATIONS = Path("lvis") / "lvis_v1_val.json"
LVIS_VOCABULARY = Path("lvis") / "lvis_v1_vocabulary.txt"

COCO_STUFF_NUM_THINGS = 80  # coco_stuff_171 lists COCO's 80 thing classes first, then 91 stuff
PLAIN_SUFFIX = "-plain"  # preset suffix for the plain class names

Names = list[str]
Flags = list[bool] | None
Loader = Callable[[str], tuple[Names, Flags]]  # class-name style -> (names, is_thing)


def _coco(style: str) -> tuple[Names, Flags]:
    class_list = builtin_class_list("coco_panoptic_133", style)
    if list(class_list.ids) != [c["id"] for c in COCO_CATEGORIES]:
        raise RuntimeError("coco_panoptic_133 and detectron2's COCO_CATEGORIES list other ids")
    return list(class_list.names), [bool(c["isthing"]) for c in COCO_CATEGORIES]


def _coco_stuff(style: str) -> tuple[Names, Flags]:
    names = list(builtin_class_list("coco_stuff_171", style).names)
    return names, [k < COCO_STUFF_NUM_THINGS for k in range(len(names))]


def _ade150(style: str) -> tuple[Names, Flags]:
    return list(builtin_class_list("ade150", style).names), ade150_thing_flags()


def _builtin(name: str) -> Loader:
    return lambda style: (list(builtin_class_list(name, style).names), None)


def _lvis(style: str) -> tuple[Names, Flags]:
    """LVIS, from the file ``datasets/prepare_lvis_vocabulary.py`` writes; reference names only."""
    path = datasets_root() / LVIS_VOCABULARY
    if not path.is_file():
        raise FileNotFoundError(
            f"vocabulary file not found: {path}; make it with: python "
            "datasets/prepare_lvis_vocabulary.py (the datasets root is $DETECTRON2_DATASETS, "
            "default datasets/)"
        )
    return read_vocabulary_file(path), None


_LOADERS: dict[str, Loader] = {
    "coco": _coco,
    "coco-stuff": _coco_stuff,
    "ade150": _ade150,
    "ade": _ade150,
    "ade847": _builtin("ade847"),
    "pascal-context": _builtin("pc59"),
    "pc59": _builtin("pc59"),
    "pc459": _builtin("pc459"),
    "voc": _builtin("voc20"),
    "voc20": _builtin("voc20"),
    "voc21": _builtin("voc21"),
    "lvis": _lvis,
}
_NO_PLAIN = {"lvis"}  # presets without a plain list

# The preset names (aliases and plain variants included), for command-line choices and help texts.
PRESETS: tuple[str, ...] = (
    *_LOADERS,
    *(f"{name}{PLAIN_SUFFIX}" for name in _LOADERS if name not in _NO_PLAIN),
)


def _preset_key(text: str) -> str:
    """Case and '-' / '_' do not matter in preset names: "COCO_Stuff" == "coco-stuff"."""
    return text.strip().lower().replace("-", "").replace("_", "")


_BY_KEY = {_preset_key(name): (name, "reference") for name in _LOADERS}
_BY_KEY |= {
    _preset_key(name + PLAIN_SUFFIX): (name, "plain") for name in _LOADERS if name not in _NO_PLAIN
}


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
    preset = _BY_KEY.get(_preset_key(text))
    if preset is not None:
        name, style = preset
        return _LOADERS[name](style)
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
