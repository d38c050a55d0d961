"""Class lists on disk: the ``id:name,synonym,...`` format and the lists shipped in the package.

A class list file has one line per class id, ``id:name1,name2,...``. Ids run consecutively from 0
or 1; a line whose name is ``invalid_class_id`` (any id) is a placeholder for an id that names no
class, and is skipped. The ids of the remaining lines are the dataset's own class ids (ADE-150
1..150, COCO-Panoptic the COCO category ids, VOC-21 0..20, ...), so they can be checked.

Two families of lists ship with the package (``maft_plus/data/vocabularies/``, see
``datasets/README.md`` and ``NOTICE`` for their sources and licence):

- ``reference``: the prompt-engineered lists the released MAFT+ checkpoints were trained and
  scored with, byte for byte as distributed;
- ``plain``: the datasets' own class names, with the same ids, which other papers report with.

VOC-20 is not a file: it is VOC-21 without its first class (the background).
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

INVALID_CLASS_NAME = "invalid_class_id"  # the name of a placeholder line
INVALID_CLASS_LINE = f"0:{INVALID_CLASS_NAME}"  # the usual first line of a file

STYLES = ("reference", "plain")  # the shipped families, see the module docstring
_PACKAGE = "maft_plus.data"
_FOLDER = "vocabularies"
_DERIVED = {"voc20": "voc21"}  # derived list -> the list it drops the first class of


@dataclass(frozen=True)
class ClassList:
    """K classes read from a class list: their ids and their comma-separated synonym strings."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def parse_class_list(text: str, source: str) -> ClassList:
    """Parse the content of a class list file; ``source`` names it in errors."""
    ids, names = [], []
    expected_id: int | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{source}, line {line_no} ({line!r})"
        id_text, sep, synonyms = line.partition(":")
        if not sep:
            raise ValueError(f"{where}: expected 'id:name1,name2,...'")
        try:
            class_id = int(id_text)
        except ValueError:
            raise ValueError(f"{where}: the id {id_text!r} is not an integer") from None
        if expected_id is None and class_id not in (0, 1):
            raise ValueError(f"{where}: the first id must be 0 or 1, got {class_id}")
        if expected_id is not None and class_id != expected_id:
            raise ValueError(
                f"{where}: ids must be consecutive, expected {expected_id}, got {class_id}"
            )
        expected_id = class_id + 1
        if synonyms.strip() == INVALID_CLASS_NAME:
            continue
        if not any(piece.strip() for piece in synonyms.split(",")):
            raise ValueError(f"{where}: class {class_id} has no name")
        ids.append(class_id)
        names.append(synonyms.strip())
    if not names:
        raise ValueError(f"class list {source} names no class")
    return ClassList(ids=tuple(ids), names=tuple(names))


def read_class_list(path: str | os.PathLike) -> ClassList:
    """Read a class list file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    class_list = parse_class_list(path.read_text(encoding="utf-8"), str(path))
    logger.debug("read %d classes from %s", len(class_list), path)
    return class_list


def read_vocabulary_file(path: str | os.PathLike) -> list[str]:
    """The K synonym strings of a class list file, ready for ``Vocabulary.from_names``."""
    return list(read_class_list(path).names)


def builtin_names() -> list[str]:
    """The names of the shipped lists, e.g. ``ade150``; every one exists in every style."""
    folder = resources.files(_PACKAGE) / _FOLDER / STYLES[0]
    files = [f.name.removesuffix(".txt") for f in folder.iterdir() if f.name.endswith(".txt")]
    return sorted([*files, *_DERIVED])


def builtin_class_list(name: str, style: str = "reference") -> ClassList:
    """A shipped class list, read from the installed package (never the working directory).

    Args:
        name: one of :func:`builtin_names`.
        style: ``"reference"`` or ``"plain"`` (see the module docstring).
    """
    if style not in STYLES:
        raise ValueError(f"class names are one of {STYLES}, got {style!r}")
    names = builtin_names()
    if name not in names:
        raise ValueError(f"no built-in vocabulary {name!r}; available: {', '.join(names)}")
    if name in _DERIVED:
        full = builtin_class_list(_DERIVED[name], style)
        return ClassList(ids=full.ids[1:], names=full.names[1:])
    resource = resources.files(_PACKAGE) / _FOLDER / style / f"{name}.txt"
    return parse_class_list(resource.read_text(encoding="utf-8"), f"{style}/{name}.txt")


def builtin_classes(name: str) -> dict[str, tuple]:
    """A shipped list's classes as registration arguments: ``class_names`` (reference),
    ``plain_class_names`` and ``class_ids`` (see ``datasets/semantic.py``)."""
    reference = builtin_class_list(name, "reference")
    return {
        "class_names": reference.names,
        "plain_class_names": builtin_class_list(name, "plain").names,
        "class_ids": reference.ids,
    }


def read_builtin_vocabulary(name: str, style: str = "reference") -> list[str]:
    """The K synonym strings of a shipped class list."""
    return list(builtin_class_list(name, style).names)


def check_replacement(
    replacement: ClassList,
    *,
    ids: Sequence[int] | None,
    names: Sequence[Sequence[str]],
    source: str,
    dataset: str,
    rename: bool = False,
) -> None:
    """Check that a class list names the classes of a dataset, in the dataset's order.

    Each class of ``replacement`` must have the dataset's id for that position and share at least
    one synonym (case and spaces aside) with one of the dataset's known names for it, so that a
    list in another order, which would silently rename classes, is refused. ``rename=True`` skips
    the name check (new names on purpose); the ids are still checked.

    Args:
        ids: the dataset's K class ids, or None if it has none (then only names are checked).
        names: per known naming (e.g. reference and plain), K synonym strings.
        source, dataset: named in the error.

    Raises:
        ValueError: naming the first class that does not match.
    """
    num_classes = len(names[0])
    if len(replacement) != num_classes:
        raise ValueError(
            f"vocabulary file {source} lists {len(replacement)} classes but dataset {dataset!r} "
            f"has {num_classes}; its ids must be the dataset's class ids"
        )
    for k, (class_id, given) in enumerate(zip(replacement.ids, replacement.names, strict=True)):
        expected_id = class_id if ids is None else ids[k]
        if class_id != expected_id:
            raise ValueError(
                f"vocabulary file {source}: class {k} ({given!r}) has id {class_id}, but class "
                f"{k} of dataset {dataset!r} has id {expected_id}"
            )
        known = [naming[k] for naming in names]
        if not rename and not _synonyms(given) & set().union(*(_synonyms(n) for n in known)):
            raise ValueError(
                f"vocabulary file {source}: class {class_id} ({given!r}) shares no name with "
                f"class {class_id} of dataset {dataset!r} ({' / '.join(map(repr, known))}); "
                "a list in another order would rename the classes (to rename them on purpose, "
                "allow renaming: --rename-classes)"
            )


def _synonyms(names: str) -> set[str]:
    """The synonyms of a comma-separated string, lower-cased with spaces normalised."""
    return {" ".join(piece.split()).lower() for piece in names.split(",") if piece.strip()}
