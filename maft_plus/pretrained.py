"""A pretrained MAFT+ model: a folder or Hugging Face Hub repo of model.safetensors + config.yaml.

``tools/convert_weights.py`` writes such a folder; uploaded as a Hub model repo, it loads with
``Predictor.from_pretrained("org/repo")``. Hub files are fetched by ``weights.hub_file`` into the
Hugging Face cache (with ``HF_HUB_OFFLINE`` set, only that cache is read). The weights are
tensors only and the config is read as plain YAML: loading a pretrained model runs no code from it.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .weights import hub_file

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "PretrainedFiles", "resolve_pretrained"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
# A Hub repo id: "org/repo" (letters, digits, "-", "_", "."), not a path like "./x" or "/x".
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class PretrainedFiles:
    """The two local files of a pretrained model."""

    config: Path  # the full config (no _BASE_), as tools/convert_weights.py writes it
    weights: Path  # the .safetensors state dict


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> PretrainedFiles:
    """The local config and weights files of a pretrained model.

    Args:
        name_or_path: a local folder holding ``model.safetensors`` and ``config.yaml``; or, when
            no such path exists, a Hugging Face Hub repo id "org/repo" holding both files.
        revision: a Hub branch, tag or commit hash (default: main); only for repo ids.
        cache_dir: the Hugging Face cache folder for repo ids (default: huggingface_hub's own).

    Raises:
        FileNotFoundError: a folder missing one of the files (named), or a name that is neither
            a folder nor a repo id.
        RuntimeError: a repo whose files could not be fetched and are not cached.
        ValueError: a config that is not plain YAML or is not self-contained (``_BASE_``).
    """
    name = str(name_or_path).strip()
    path = Path(name).expanduser()
    if path.exists():
        files = _local_files(path, revision)
    elif REPO_ID.fullmatch(name):
        files = _hub_files(name, revision, cache_dir)
    else:
        raise FileNotFoundError(
            f"no pretrained model {name!r}: expected a local folder holding {WEIGHTS_NAME} and "
            f"{CONFIG_NAME}, or a Hugging Face Hub repo id 'org/repo'"
        )
    check_plain_config(files.config)
    return files


def _local_files(folder: Path, revision: str | None) -> PretrainedFiles:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is a file; a pretrained model is a folder holding {WEIGHTS_NAME} and "
            f"{CONFIG_NAME} (tools/convert_weights.py writes one)"
        )
    if revision:
        raise ValueError(
            f"revision={revision!r} picks a Hugging Face Hub revision, but {folder} is a local "
            "folder"
        )
    missing = [name for name in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the pretrained model folder {folder} has no {' and no '.join(missing)}; it needs "
            f"{WEIGHTS_NAME} and {CONFIG_NAME} (tools/convert_weights.py writes both)"
        )
    return PretrainedFiles(config=folder / CONFIG_NAME, weights=folder / WEIGHTS_NAME)


def _hub_files(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> PretrainedFiles:
    try:
        return PretrainedFiles(
            config=hub_file(repo_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir),
            weights=hub_file(repo_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir),
        )
    except RuntimeError as exc:
        raise RuntimeError(
            f"no local folder {repo_id!r}, and the Hugging Face Hub repo {repo_id} could not be "
            f"used: {exc} (A pretrained model's local path is a folder holding {WEIGHTS_NAME} and "
            f"{CONFIG_NAME}.)"
        ) from exc


def check_plain_config(path: Path) -> None:
    """Raise unless ``path`` is a self-contained config in plain YAML.

    detectron2 falls back to ``yaml.unsafe_load`` (which can run code) for files with Python tags;
    a config downloaded with a model must never reach it. ``_BASE_`` is refused too: it would name
    files outside the pretrained model.
    """
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not a plain YAML config ({exc}); a pretrained model's config is read "
            "with safe YAML only (Python tags, which can run code, are refused)"
        ) from exc
    if not isinstance(content, dict):
        raise ValueError(f"{path} should hold a YAML mapping of config keys, not {content!r:.60}")
    if "_BASE_" in content:
        raise ValueError(
            f"{path} names a _BASE_ config; a pretrained model's config must be self-contained "
            "(tools/convert_weights.py writes the full config)"
        )
