"""Shared steps of the ``datasets/prepare_<name>.py`` scripts.

They turn the files users download into the layout of ``datasets/README.md``: label maps are
converted with a progress bar (in several processes where a script offers ``--workers``), written
atomically (a crash never leaves a half-written file), and skipped when already up to date, so a
script is safe to re-run; each script ends by checking the number of files it expects. Every
benchmark script takes ``--root`` (the datasets root) and ``--expected-val-images``.
"""

import argparse
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..files import write_atomically
from .datasets.builtin import datasets_root
from .datasets.register_coco import EXPECTED_IMAGES, SPLITS, images_dir

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def argument_parser(
    doc: str,
    *,
    expected_val_images: int,
    expected_train_images: int | None = None,
    workers: bool = False,
) -> argparse.ArgumentParser:
    """The options of a prepare script: ``--root``, ``--expected-val-images`` and those asked for.

    Args:
        doc: the script's docstring; its first line describes the script.
        expected_val_images: the validation images of the real dataset (the option's default).
        expected_train_images: if given, also ``--expected-train-images`` with this default.
        workers: also ``--workers``, the number of processes (1: none).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--root",
        default=str(datasets_root()),
        help="the datasets root ($DETECTRON2_DATASETS, default datasets/)",
    )
    for split, default in (("val", expected_val_images), ("train", expected_train_images)):
        if default is not None:
            parser.add_argument(
                f"--expected-{split}-images",
                type=int,
                default=default,
                help=f"{split} images the download holds, checked at the end (default %(default)s)",
            )
    if workers:
        parser.add_argument(
            "--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes (1: none)"
        )
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (None: the command line) and send INFO log messages to stderr."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args


def require_input(path: str | Path, what: str, source: str) -> Path:
    """``path`` if it exists, else FileNotFoundError naming it and where it comes from."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; it comes from {source}")
    return path


def read_split(split_file: Path, *, expected: int | None = None) -> list[str]:
    """The image ids of a VOC split file: the first word of each non-blank line.

    Raises RuntimeError if ``expected`` is given and the file lists another number of ids.
    """
    lines = split_file.read_text(encoding="utf-8").splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    if expected is not None and len(ids) != expected:
        raise RuntimeError(f"{split_file} lists {len(ids)} ids, expected {expected}")
    return ids


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr."""
    return iter(tqdm(items, desc=description, total=total, unit="file", dynamic_ncols=True))


def map_with_progress(
    fn: Callable[[T], R], jobs: Sequence[T], *, workers: int, description: str
) -> list[R]:
    """``[fn(job) for job in jobs]`` with a progress bar, in ``workers`` processes if more than 1.

    The results are in job order. With several workers ``fn`` and the jobs are pickled, so ``fn``
    must be a module-level function.
    """
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(fn, jobs, chunksize=64)
            return list(progress(results, description, total=len(jobs)))
    return list(progress(map(fn, jobs), description, total=len(jobs)))


def is_up_to_date(target: Path, *sources: Path) -> bool:
    """True if ``target`` exists and is at least as new as every source (skip on re-runs)."""
    if not target.exists():
        return False
    newest = max((s.stat().st_mtime for s in sources), default=0.0)
    return target.stat().st_mtime >= newest


class Conversions:
    """Counts the items a script converts and those it skips as up to date, for its summary."""

    def __init__(self) -> None:
        self.converted = 0
        self.skipped = 0

    def skip(self, targets: Iterable[Path], *sources: Path) -> bool:
        """True if every target is up to date with ``sources`` (counted as skipped); else False,
        counted as converted (the caller then writes the targets)."""
        if all(is_up_to_date(target, *sources) for target in targets):
            self.skipped += 1
            return True
        self.converted += 1
        return False

    def __str__(self) -> str:
        return f"{self.converted} converted, {self.skipped} already up to date"


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


def write_text_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds it; True if it was written."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomically(path, lambda name: Path(name).write_text(text, encoding="utf-8"))
    return True


def link_or_copy(source: Path, target: Path) -> bool:
    """Make ``target`` a hard link to ``source``, atomically, unless it is up to date.

    Where linking fails (another file system, no hard links) ``target`` is a copy instead.
    Returns True if ``target`` was written.
    """
    if is_up_to_date(target, source):  # a hard link shares the source's modification time
        return False

    def link(name: str) -> None:
        os.unlink(name)  # os.link will not replace the empty file write_atomically made
        try:
            os.link(source, name)
        except OSError:
            shutil.copy2(source, name)

    write_atomically(target, link)
    return True


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


def prepare_coco_splits(
    doc: str,
    argv: list[str] | None,
    *,
    name: str,
    prepare_split: Callable[[Path, str, int], int],
    labels_dir: Callable[[str], Path],
    labels_what: str,
    dataset_names: Sequence[str],
) -> str:
    """The command line of a COCO prepare script (``--splits``, ``--workers``, the counts).

    For each chosen split: ``prepare_split(root, split, workers)`` converts its label maps and
    returns how many images it left without one on purpose; then the split's images and the maps
    in ``labels_dir(split)`` are counted against the expected numbers.

    Args:
        doc: the script's docstring; argv: its arguments (None: the command line).
        name: the dataset's name in messages, e.g. ``"COCO-Stuff"``.
        labels_what: what the converted maps are, e.g. ``"labels"``.
        dataset_names: the registered datasets that are ready at the end.

    Returns:
        The line for the script to print when all is ready.
    """
    parser = argument_parser(
        doc,
        expected_val_images=EXPECTED_IMAGES["val2017"],
        expected_train_images=EXPECTED_IMAGES["train2017"],
        workers=True,
    )
    parser.add_argument(
        "--splits", nargs="+", choices=list(SPLITS.values()), default=list(SPLITS.values())
    )
    args = parse_arguments(parser, argv)
    root = Path(args.root)
    expected = {"train2017": args.expected_train_images, "val2017": args.expected_val_images}
    for split in args.splits:
        left_out = prepare_split(root, split, args.workers)
        check_count(root / images_dir(split), "*.jpg", expected[split], f"COCO {split} images")
        labels = f"{name} {split} {labels_what}"
        check_count(root / labels_dir(split), "*.png", expected[split] - left_out, labels)
    return f"{name} ready under {root / 'coco'}: datasets {', '.join(dataset_names)}"
