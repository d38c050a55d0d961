"""resolve_weights: a local path, an http(s) URL or an ``hf://`` model-hub id -> a local file.

URLs are downloaded once into a cache folder (``$MAFT_PLUS_CACHE``, default
``~/.cache/maft_plus``) and reused without network afterwards; hub ids go through
``huggingface_hub`` and its own cache (``hub_file``, also used for pretrained Hub repos). A
download is written to a temporary file and renamed into place only when complete, so an
interrupted one never leaves a corrupt cached file. This module only finds files: loading stays
tensors-only through ``MAFTPlusCheckpointer``.
"""

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

logger = logging.getLogger(__name__)

__all__ = ["default_cache_dir", "hub_file", "resolve_weights"]

CACHE_ENV = "MAFT_PLUS_CACHE"
DEFAULT_CACHE = Path("~/.cache/maft_plus")
OFFLINE_ENV = "HF_HUB_OFFLINE"  # the offline switch the tests and the Hugging Face cache share
DOWNLOAD_TIMEOUT_S = 60.0  # per network operation (connect, each read), not for the whole file
CHUNK_BYTES = 1 << 20
HF_PREFIX = "hf://"


def default_cache_dir() -> Path:
    """``$MAFT_PLUS_CACHE``, else ``~/.cache/maft_plus``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def resolve_weights(spec: str, *, cache_dir: str | Path | None = None) -> Path:
    """The local file of a weights specification, downloading it if needed.

    Args:
        spec: a local path; an ``http://`` or ``https://`` URL (downloaded once into the cache); or
            ``hf://org/repo/path/in/repo.pth`` (``org/repo@revision`` picks a revision), fetched
            with ``huggingface_hub.hf_hub_download``.
        cache_dir: where URLs are cached (default :func:`default_cache_dir`); for ``hf://`` ids,
            the Hugging Face cache folder (default: huggingface_hub's own).

    Raises:
        FileNotFoundError: a local path that does not exist.
        RuntimeError: a URL or hub id that could not be fetched (network failure, or
            ``HF_HUB_OFFLINE=1``) and is not cached.
    """
    if not isinstance(spec, str | os.PathLike) or not str(spec).strip():
        raise ValueError(
            f"weights must be a file path, an http(s) URL or an hf:// id, got {spec!r}"
        )
    spec = str(spec).strip()
    if spec.startswith(("http://", "https://")):
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return _cached_download(spec, cache)
    if spec.startswith(HF_PREFIX):
        return _hub_download(spec, cache_dir)
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"weights file {what}: {path}")
    return path


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _fetch_error(source: str, reason: str) -> RuntimeError:
    return RuntimeError(
        f"the file could not be fetched from {source}: {reason}. Download the file manually "
        "(e.g. in a browser or with wget) and pass its local path instead."
    )


def cache_file_name(url: str) -> str:
    """``<hash>-<file name>``: the URL's file name, prefixed by 8 hex digits of its sha256."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "weights"
    return f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:8]}-{name}"


def _cached_download(url: str, cache: Path) -> Path:
    target = cache / cache_file_name(url)
    if target.is_file():
        logger.debug("using the cached %s for %s", target, url)
        return target
    if _offline():
        raise _fetch_error(url, f"{OFFLINE_ENV} is set and {target} is not cached")
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected = _download(url, out)
        if expected is not None and received != expected:
            raise _fetch_error(
                url, f"the download was cut short ({received} of {expected} bytes received)"
            )
        os.replace(tmp, target)
    except (OSError, HTTPException) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise _fetch_error(url, f"{type(exc).__name__}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left if the download failed
    logger.info("downloaded %s to %s (%d bytes)", url, target, received)
    return target


def _download(url: str, out) -> tuple[int, int | None]:
    """Copy ``url`` into the open binary file ``out``; return (bytes received, Content-Length)."""
    request = urllib.request.Request(url, headers={"User-Agent": "maft-plus"})
    logger.info("downloading %s", url)
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=expected, unit="B", unit_scale=True, desc=cache_file_name(url)[9:], disable=None
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    return received, expected


def _hub_download(spec: str, cache_dir: str | Path | None) -> Path:
    """``hf://org/repo[@revision]/path/in/repo`` through :func:`hub_file`."""
    parts = spec.removeprefix(HF_PREFIX).split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"a model-hub id is hf://org/repo/path/in/repo.pth, got {spec!r}")
    org, repo, filename = parts
    repo, _, revision = repo.partition("@")
    return hub_file(f"{org}/{repo}", filename, revision=revision or None, cache_dir=cache_dir)


def hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """One file of a Hugging Face Hub repo, from the Hugging Face cache or downloaded into it.

    Args:
        repo_id: "org/repo".
        filename: the file's path inside the repo.
        revision: a branch, tag or commit hash (default: the repo's main branch).
        cache_dir: the Hugging Face cache folder (default: huggingface_hub's own).

    With ``HF_HUB_OFFLINE`` set only the cache is used (``local_files_only``).

    Raises:
        RuntimeError: the file could not be fetched and is not cached; the message says when
            ``HF_HUB_OFFLINE`` is the reason.
    """
    from huggingface_hub import hf_hub_download  # only needed for hub files

    at = f"@{revision}" if revision else ""
    source = f"{HF_PREFIX}{repo_id}{at}/{filename}"
    try:
        path = hf_hub_download(
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=_offline(),
        )
    except OSError as exc:  # hub HTTP errors and "not in the local cache" are OSErrors
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if _offline():
            from huggingface_hub.constants import HF_HUB_CACHE

            reason = (
                f"{OFFLINE_ENV} is set and the file is not in the Hugging Face cache "
                f"{cache_dir or HF_HUB_CACHE} ({reason})"
            )
        raise _fetch_error(source, reason) from exc
    return Path(path)
