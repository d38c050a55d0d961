"""Vocabulary: the classes to segment, each a list of synonyms, with thing/stuff flags.

Shapes: K classes, S synonyms in the vocabulary (S >= K).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vocabulary:
    """K classes, each a tuple of synonyms, and whether each class is a thing (else stuff).

    Immutable and hashable, so it can key a cache. Build it with :meth:`from_names`.

    Attributes:
        class_synonyms: K tuples of synonyms; each non-empty, no blank or repeated synonym.
        is_thing: K flags; things stay separate instances in panoptic/instance inference, stuff
            segments of one class merge.
    """

    class_synonyms: tuple[tuple[str, ...], ...]
    is_thing: tuple[bool, ...]

    def __post_init__(self) -> None:
        synonyms = _as_tuple(self.class_synonyms, "class_synonyms")
        if not synonyms:
            raise ValueError("a vocabulary needs at least one class, got class_synonyms=()")
        synonyms = tuple(_as_tuple(syns, f"class_synonyms[{k}]") for k, syns in enumerate(synonyms))
        for k, names in enumerate(synonyms):
            if not names:
                raise ValueError(f"class {k} has no synonym: class_synonyms[{k}]=()")
            for name in names:
                if not isinstance(name, str) or not name.strip():
                    raise ValueError(
                        f"class {k} has an invalid synonym {name!r} (expected a non-blank string) "
                        f"in class_synonyms[{k}]={names!r}"
                    )
            if len(set(names)) != len(names):
                raise ValueError(f"class {k} repeats a synonym: class_synonyms[{k}]={names!r}")

        flags = _as_tuple(self.is_thing, "is_thing")
        if len(flags) != len(synonyms):
            raise ValueError(
                f"is_thing needs one flag per class: got {len(flags)} flags for "
                f"{len(synonyms)} classes (is_thing={self.is_thing!r})"
            )
        for k, flag in enumerate(flags):
            if not isinstance(flag, bool | np.bool_):
                raise ValueError(
                    f"is_thing[{k}] must be a bool, got {flag!r} ({type(flag).__name__})"
                )
        # frozen: normalize lists to tuples through object.__setattr__ so the value stays hashable
        object.__setattr__(self, "class_synonyms", synonyms)
        object.__setattr__(self, "is_thing", tuple(bool(flag) for flag in flags))

    @classmethod
    def from_names(
        cls, names: Sequence[str], is_thing: Sequence[bool] | None = None
    ) -> "Vocabulary":
        """Parse one comma-separated synonym string per class, e.g. ``["cat, kitty", "sky"]``.

        Each string is split on commas and each piece stripped; empty pieces (a trailing comma,
        ``"a,,b"``) are dropped and repeated synonyms keep their first occurrence. A class left
        with no synonym is an error. ``is_thing=None`` makes every class a thing.
        """
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(
                f"names must be a sequence of comma-separated synonym strings, one per class, "
                f"got {names!r}"
            )
        if not names:
            raise ValueError("a vocabulary needs at least one class, got names=[]")
        class_synonyms = []
        for k, entry in enumerate(names):
            if not isinstance(entry, str):
                raise ValueError(
                    f"names[{k}] must be a comma-separated synonym string, got {entry!r} "
                    f"({type(entry).__name__})"
                )
            pieces = (piece.strip() for piece in entry.split(","))
            synonyms = tuple(dict.fromkeys(piece for piece in pieces if piece))  # ordered, unique
            if not synonyms:
                raise ValueError(f"names[{k}]={entry!r} has no non-blank synonym")
            class_synonyms.append(synonyms)
        if is_thing is None:
            is_thing = (True,) * len(class_synonyms)
        return cls(class_synonyms=tuple(class_synonyms), is_thing=is_thing)

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_synonyms)

    @property
    def num_synonyms(self) -> int:
        """S."""
        return sum(len(names) for names in self.class_synonyms)

    @property
    def synonyms(self) -> tuple[str, ...]:
        """All S synonyms, class by class (the row order of the text embeddings)."""
        return tuple(name for names in self.class_synonyms for name in names)

    @property
    def synonym_to_class(self) -> tuple[int, ...]:
        """For each of the S synonyms, the index of its class."""
        return tuple(k for k, names in enumerate(self.class_synonyms) for _ in names)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The first synonym of each class (K entries), for display."""
        return tuple(names[0] for names in self.class_synonyms)


def _as_tuple(value: object, name: str) -> tuple:
    """``value`` as a tuple, if it is a list or tuple; otherwise a ValueError naming ``name``."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a tuple or list, got {value!r} ({type(value).__name__})")
    return tuple(value)
