"""The two fixed ADE20K id tables of the reference preparation, shipped as package data.

- ``ade847_object_codes.txt``: the 847 ADE20K-full object codes of A-847, one per line in train-id
  order (line k holds the code of train id k; a code is ``R // 10 * 256 + G`` of a ``_seg.png``).
  Train id 0 is wall (code 2978), 1 building (312), ..., 846 adding machine (3148).
- ``ade20k_instance_catid_mapping.txt``: the ADE20K instance-challenge categories (1..100, the R
  value of the instance pngs) and the ADE-150 class each one is (1..150), with the ADE20K-full
  code(s) behind it; a header line, then ``instance<TAB><TAB>ade150<TAB><TAB>full`` rows.
  Its 100 ADE-150 classes are the things of ADE20K panoptic.

Sources and licences: ``datasets/README.md`` and ``NOTICE``.
"""

from functools import cache
from importlib import resources

import numpy as np

from .label_formats import TIF_IGNORE

_TABLES = resources.files("maft_plus.data") / "tables"

ADE847_NUM_CLASSES = 847
ADE150_NUM_CLASSES = 150
ADE_NUM_THINGS = 100


@cache
def ade847_object_codes() -> tuple[int, ...]:
    """The 847 ADE20K-full object codes, indexed by A-847 train id."""
    text = (_TABLES / "ade847_object_codes.txt").read_text(encoding="utf-8")
    codes = tuple(int(line) for line in text.split())
    if len(codes) != ADE847_NUM_CLASSES or len(set(codes)) != len(codes):
        raise RuntimeError(f"ade847_object_codes.txt: expected 847 distinct codes, got {codes}")
    return codes


@cache
def ade_instance_classes() -> dict[int, int]:
    """Instance-challenge category (1..100) -> ADE-150 class (1..150)."""
    text = (_TABLES / "ade20k_instance_catid_mapping.txt").read_text(encoding="utf-8")
    mapping: dict[int, int] = {}
    for row in text.splitlines()[1:]:  # the first line is a header
        instance, ade150, _full_code = (int(v) for v in row.split())
        if mapping.setdefault(instance, ade150) != ade150:
            raise RuntimeError(f"instance category {instance} maps to two ADE-150 classes")
    if sorted(mapping) != list(range(1, ADE_NUM_THINGS + 1)):
        raise RuntimeError("ade20k_instance_catid_mapping.txt: expected categories 1..100")
    return mapping


def ade150_thing_flags() -> list[bool]:
    """(150,) whether each ADE-150 class (train id order) is a thing: the 100 instance classes."""
    things = set(ade_instance_classes().values())
    return [k + 1 in things for k in range(ADE150_NUM_CLASSES)]


def ade847_code_lookup() -> np.ndarray:
    """(C,) uint16 table: ``_seg.png`` object code -> A-847 train id, 65535 for any other code."""
    codes = np.array(ade847_object_codes())
    largest_code = 255 // 10 * 256 + 255  # the largest code a _seg.png can hold
    lookup = np.full(max(largest_code, int(codes.max())) + 1, TIF_IGNORE, dtype=np.uint16)
    lookup[codes] = np.arange(len(codes), dtype=np.uint16)
    return lookup
