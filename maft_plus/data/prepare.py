"""Shared steps of the ``datasets/prepare_<name>.py`` scripts.

They turn the files users download into the layout of ``datasets/README.md``: label maps are
converted with a progress bar, written atomically (a crash never leaves a half-written file), and
skipped when already up to date, so a script is safe to re-run; each script ends by checking the
number of files it expects.
"""

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")

PNG_IGNORE = 255  # ignore label of uint8 png label maps
TIF_IGNORE = 65535  # ignore label of uint16 tif label maps (more than 255 classes)


def require_input(path: str | Path, what: str, source: str) -> Path:
    """``path`` if it exists, else FileNotFoundError naming it and where it comes from."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; it comes from {source}")
    return path


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr."""
    return iter(tqdm(items, desc=description, total=total, unit="file", dynamic_ncols=True))


def is_up_to_date(target: Path, *sources: Path) -> bool:
    """True if ``target`` exists and is at least as new as every source (skip on re-runs)."""
    if not target.exists():
        return False
    newest = max((s.stat().st_mtime for s in sources), default=0.0)
    return target.stat().st_mtime >= newest


def write_label_map(labels: np.ndarray, path: str | Path) -> None:
    """Write a label map atomically: uint8 as png, uint16 as tif (by the path's suffix)."""
    path = Path(path)
    formats = {".png": (np.uint8, "PNG"), ".tif": (np.uint16, "TIFF"), ".tiff": (np.uint16, "TIFF")}
    if path.suffix not in formats:
        raise ValueError(f"label maps are .png (uint8) or .tif (uint16), got {path}")
    dtype, image_format = formats[path.suffix]
    if labels.dtype != dtype or labels.ndim != 2:
        raise ValueError(
            f"{path}: expected a 2-D {np.dtype(dtype)} array, got {labels.dtype} {labels.shape}"
        )
    write_atomically(path, lambda name: Image.fromarray(labels).save(name, format=image_format))


def write_atomically(path: Path, write) -> None:
    """Call ``write(file_name)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_count(folder: str | Path, pattern: str, expected: int, what: str) -> int:
    """Count ``pattern`` files in ``folder``; log success or raise if the count is wrong."""
    found = len(list(Path(folder).glob(pattern)))
    if found != expected:
        raise RuntimeError(
            f"{what}: expected {expected} files matching {pattern} in {folder}, found {found}; "
            "the download may be incomplete (re-run the script after fixing it)"
        )
    logger.info("%s: %d files in %s, as expected", what, found, folder)
    return found
