"""maft-plus: MAFT+ open-vocabulary segmentation on detectron2 and open_clip.

Importing the package registers its models (detectron2 and open_clip registries); it has no
other side effects.
"""

from . import modeling  # noqa: F401  (registration)

__version__ = "0.1.0"
