"""Class colours shared by every picture (overlays, legends, evaluation plots).

Deterministic: class k has the same colour in the demo's overlay, its legend and the prediction
grid of an evaluation, for any number of classes.
"""

import colorsys

import numpy as np

__all__ = ["class_color", "instance_color"]

# Hue step of the colour walk: the golden ratio spreads any number of hues evenly around the circle.
_GOLDEN_RATIO = 0.6180339887498949
# Saturation and value levels cycled with the label, so that labels of nearby hue still differ.
_SATURATIONS = (0.92, 0.6, 0.76, 0.5)
_VALUES = (0.95, 0.8, 0.88, 0.7)
# Per-instance shades of a class colour: > 0 mixes towards white, < 0 towards black.
_INSTANCE_SHADES = (0.0, 0.35, -0.3, 0.18, -0.15)


def class_color(label: int) -> tuple[int, int, int]:
    """The RGB colour of class `label` (any non-negative int): deterministic, saturated.

    Consecutive labels are far apart in hue (a golden-ratio walk); saturation and value cycle too,
    so labels 0..999 all get different colours. No colour is near black or white.
    """
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or label < 0:
        raise ValueError(f"class_color needs a non-negative int label, got {label!r}")
    label = int(label)
    hue = (0.05 + label * _GOLDEN_RATIO) % 1.0
    saturation = _SATURATIONS[label % 11 % len(_SATURATIONS)]
    value = _VALUES[(label // 11) % len(_VALUES)]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def instance_color(label: int, index: int) -> tuple[int, int, int]:
    """The colour of the `index`-th instance of class `label`: a lighter or darker class colour."""
    shade = _INSTANCE_SHADES[index % len(_INSTANCE_SHADES)]
    base = np.array(class_color(label), dtype=np.float64)
    target = 255.0 if shade > 0 else 0.0
    mixed = base + abs(shade) * (target - base)
    return tuple(int(round(c)) for c in mixed)
