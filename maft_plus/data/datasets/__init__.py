"""Dataset registration in detectron2's catalogs."""

from .builtin import check_registered, datasets_root, register_builtin_datasets
from .register_synthetic import (
    DEFAULT_PREFIX,
    register_synthetic,
    unregister,
)

__all__ = [
    "DEFAULT_PREFIX",
    "check_registered",
    "datasets_root",
    "register_builtin_datasets",
    "register_synthetic",
    "unregister",
]
