"""What each registered dataset needs on disk, so that a missing folder gets a clear error.

Registration functions record, per dataset name, the paths it reads and the script that makes
each; :func:`check_dataset_files` verifies them before any data loader is built.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

_REQUIREMENTS: dict[str, list[tuple[Path, str]]] = {}


def require(name: str, paths: Sequence[str | Path], prepare_script: str) -> None:
    """Record that dataset ``name`` also reads ``paths``, made by ``prepare_script``."""
    _REQUIREMENTS.setdefault(name, []).extend((Path(p), prepare_script) for p in paths)


def forget(name: str) -> None:
    _REQUIREMENTS.pop(name, None)


def missing_files_message(name: str) -> str | None:
    """None if every path of ``name`` exists, else a message naming the first missing one."""
    if name not in _REQUIREMENTS:
        return None
    for path, script in _REQUIREMENTS[name]:
        if not path.exists():
            return (
                f"dataset {name!r} expects {path}, which does not exist; prepare it with: "
                f"python {script} (see datasets/README.md for the expected tree and the downloads; "
                "set $DETECTRON2_DATASETS to the folder that holds your datasets)"
            )
    return None


def check_dataset_files(names: Iterable[str]) -> None:
    """Raise FileNotFoundError for the first dataset whose files are missing."""
    for name in names:
        message = missing_files_message(name)
        if message:
            raise FileNotFoundError(message)
