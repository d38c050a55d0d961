"""Skip records: a dataset file that cannot be used is reported and left out, never fatal.

A skip record is the dict ``{"file_name": <the image>, "reason": <what was wrong, naming the
files>}``. The evaluation mapper returns one in place of a model input; the semantic evaluator
makes one for a label it cannot score; the evaluation loop gathers them, logs a summary and writes
them to a JSON report.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from detectron2.data import detection_utils as utils
from PIL import Image

from ..files import write_atomically

logger = logging.getLogger(__name__)

# What PIL (through detectron2's read_image) raises for a missing, truncated, corrupt or foreign
# file: OSError covers FileNotFoundError, UnidentifiedImageError and "image file is truncated".
IMAGE_READ_ERRORS = (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError)
SKIP_RECORD_KEYS = frozenset({"file_name", "reason"})


class SkippedRecordError(Exception):
    """A dataset record that cannot be used; the message names the file(s) and the fault."""


def skip_record(file_name: str, reason: str) -> dict[str, str]:
    """The record of one skipped image."""
    return {"file_name": str(file_name), "reason": reason}


def is_skip_record(item: dict) -> bool:
    """Whether a mapper output is a skip record (a model input has an ``image``, and more keys)."""
    return set(item) == SKIP_RECORD_KEYS


def read_checked(
    path: str, what: str, image_file: str | None = None, format: str | None = None
) -> np.ndarray:
    """``detection_utils.read_image(path, format)``; a :class:`SkippedRecordError` naming ``what``
    ("image", "label"), ``path`` and the ``image_file`` it belongs to if the file is missing or
    cannot be decoded."""
    name = f"{what} {path}" + (f" of image {image_file}" if image_file else "")
    try:
        return utils.read_image(path, format=format)
    except FileNotFoundError as exc:
        raise SkippedRecordError(f"{name} not found") from exc
    except IMAGE_READ_ERRORS as exc:
        raise SkippedRecordError(f"could not read the {name}: {exc}") from exc


def num_skipped_images(skipped: Sequence[dict]) -> int:
    """How many distinct images ``skipped`` names (an image may be skipped for two reasons)."""
    return len({s["file_name"] for s in skipped})


def skipped_summary(dataset_name: str, skipped: Sequence[dict], num_images: int) -> str:
    """One message naming every skipped image of a dataset with its reason."""
    lines = [f"{dataset_name}: {num_skipped_images(skipped)} of {num_images} images skipped:"]
    lines += [f"  {s['file_name']}: {s['reason']}" for s in skipped]
    return "\n".join(lines)


def write_skipped_report(path: str | Path, skipped: Mapping[str, Sequence[dict]]) -> None:
    """Write ``{dataset name: [skip record, ...]}`` to ``path`` as JSON, atomically."""
    text = json.dumps({name: list(files) for name, files in skipped.items()}, indent=2)
    write_atomically(Path(path), lambda name: Path(name).write_text(text, encoding="utf-8"))
    logger.info("wrote the list of skipped files to %s", path)
