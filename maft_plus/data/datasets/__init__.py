"""Dataset registration in detectron2's catalogs."""

from .register_synthetic import (
    DEFAULT_PREFIX,
    load_synthetic_panoptic,
    register_synthetic,
    unregister,
)

__all__ = ["DEFAULT_PREFIX", "load_synthetic_panoptic", "register_synthetic", "unregister"]
