"""Files an evaluation left out, each with its reason: gathering, the summary and the JSON report.

A skipped file is a dict ``{"file_name": <the image>, "reason": <what was wrong, naming files>}``.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from itertools import chain
from pathlib import Path

from detectron2.utils import comm

from ..files import write_atomically

logger = logging.getLogger(__name__)


class NothingEvaluatedError(RuntimeError):
    """No image of a dataset could be evaluated: every one of them was skipped."""


def skip_record(file_name: str, reason: str) -> dict[str, str]:
    """The record of one skipped image."""
    return {"file_name": str(file_name), "reason": reason}


def all_gather_list(items: list) -> list:
    """Every process's ``items`` concatenated in rank order, on every process (a collective)."""
    return list(chain.from_iterable(comm.all_gather(items)))


def num_skipped_images(skipped: Sequence[dict]) -> int:
    """How many distinct images ``skipped`` names (an image may be skipped for two reasons)."""
    return len({s["file_name"] for s in skipped})


def skipped_summary(dataset_name: str, skipped: Sequence[dict], num_images: int) -> str:
    """One message naming every skipped image of a dataset with its reason."""
    lines = [f"{dataset_name}: {num_skipped_images(skipped)} of {num_images} images skipped:"]
    lines += [f"  {s['file_name']}: {s['reason']}" for s in skipped]
    return "\n".join(lines)


def write_skipped_report(path: str | Path, skipped: Mapping[str, Sequence[dict]]) -> None:
    """Write ``{dataset name: [skipped file, ...]}`` to ``path`` as JSON, atomically."""
    text = json.dumps({name: list(files) for name, files in skipped.items()}, indent=2)
    write_atomically(Path(path), lambda name: Path(name).write_text(text, encoding="utf-8"))
    logger.info("wrote the list of skipped files to %s", path)
