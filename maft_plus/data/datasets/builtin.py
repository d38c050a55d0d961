"""Registration of every dataset under ``$DETECTRON2_DATASETS`` (default ``datasets/``).

Call :func:`register_builtin_datasets` once per process before building data loaders
(``train_net.py`` and the tools do). The benchmarks are always registered, prepared or not;
:func:`check_registered` then turns a missing folder into an error that names it and the script
that prepares it. ``datasets/README.md`` shows the whole tree.
"""

import logging
from collections.abc import Iterable
from pathlib import Path

from detectron2.data import DatasetCatalog

from ..paths import datasets_root
from .register_ade import register_ade
from .register_coco import register_coco
from .register_pascal import register_pascal
from .register_synthetic import DEFAULT_PREFIX, register_synthetic
from .requirements import check_dataset_files

logger = logging.getLogger(__name__)

SYNTHETIC_FOLDER = "maftp_synthetic"  # written by datasets/prepare_synthetic.py


def register_builtin_datasets(root: str | Path | None = None) -> list[str]:
    """Register the benchmarks and, if prepared, the synthetic dataset; return the names."""
    root = Path(root) if root is not None else datasets_root()
    names = [*register_coco(root), *register_ade(root), *register_pascal(root)]
    synthetic = root / SYNTHETIC_FOLDER
    if synthetic.is_dir():
        names += register_synthetic(synthetic, DEFAULT_PREFIX)
    else:
        logger.debug("no synthetic dataset at %s", synthetic)
    return names


def check_registered(dataset_names: Iterable[str], root: str | Path | None = None) -> None:
    """Raise a clear error for a dataset that is not registered or whose files are missing."""
    root = Path(root) if root is not None else datasets_root()
    dataset_names = list(dataset_names)
    for name in dataset_names:
        if name in DatasetCatalog.list():
            continue
        if name.startswith(DEFAULT_PREFIX):
            raise FileNotFoundError(
                f"dataset {name!r} needs the synthetic dataset at {root / SYNTHETIC_FOLDER}; "
                f"make it with: python datasets/prepare_synthetic.py (DETECTRON2_DATASETS={root})"
            )
        raise KeyError(f"dataset {name!r} is not registered (datasets root: {root})")
    check_dataset_files(dataset_names)
