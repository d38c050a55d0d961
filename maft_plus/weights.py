"""resolve_weights: a local path, an http(s) URL or an ``hf://`` model-hub id -> a local file.

URLs are downloaded once into a cache folder (``$MAFT_PLUS_CACHE``, default
``~/.cache/maft_plus``) and reused without network afterwards; hub ids go through
``huggingface_hub`` and its own cache (``hub_file``, also used for pretrained Hub repos). A
download is written to a temporary file and renamed into place only when complete (and, when
pinned, only when its sha256 matches), so an interrupted or corrupted one never leaves a cached
file. Transient failures (connection refused or reset, timeouts, HTTP 5xx, 429 and 408, a body
shorter than its Content-Length) are retried with exponential backoff; other HTTP errors are not.
A sha256 pin (the ``sha256`` argument, or a ``#sha256=<hex>`` suffix on a URL or hub id) is
checked on every call: fresh downloads, cached files, local paths and hub files alike. This
module only finds files: loading stays tensors-only through ``MAFTPlusCheckpointer``.
"""

import hashlib
import logging
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

logger = logging.getLogger(__name__)

__all__ = ["ChecksumMismatch", "default_cache_dir", "file_sha256", "hub_file", "resolve_weights"]

CACHE_ENV = "MAFT_PLUS_CACHE"
DEFAULT_CACHE = Path("~/.cache/maft_plus")
OFFLINE_ENV = "HF_HUB_OFFLINE"  # the offline switch the tests and the Hugging Face cache share
DOWNLOAD_TIMEOUT_S = 60.0  # per network operation (connect, each read), not for the whole file
CHUNK_BYTES = 1 << 20
HF_PREFIX = "hf://"
PIN_KEY = "sha256"  # the fragment key of a pinned spec: ...#sha256=<64 hex digits>
DOWNLOAD_ATTEMPTS = 3  # tries per download; only transient failures get another one
RETRY_BACKOFF_S = 1.0  # the wait before retry k (k = 1, 2, ...) is RETRY_BACKOFF_S * 2**(k - 1)
# A complete download whose sha256 is not the pin is tried once more, not DOWNLOAD_ATTEMPTS times:
# bytes corrupted in flight come right on a second try, a wrong pin (or a file changed on the
# server) gives the same digest again, and each try of a checkpoint costs hundreds of MB.
MISMATCH_ATTEMPTS = 2
RETRY_HTTP_CODES = frozenset({408, 429})  # retried besides every 5xx; other 4xx are permanent
_sleep = time.sleep  # the backoff wait; tests swap it for one that records and returns at once


class ChecksumMismatch(RuntimeError):
    """A file's sha256 is not its pin (a download, a cached file, a local path or a hub file)."""


def default_cache_dir() -> Path:
    """``$MAFT_PLUS_CACHE``, else ``~/.cache/maft_plus``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def resolve_weights(
    spec: str, *, cache_dir: str | Path | None = None, sha256: str | None = None
) -> Path:
    """The local file of a weights specification, downloading it if needed.

    Args:
        spec: a local path; an ``http://`` or ``https://`` URL (downloaded once into the cache); or
            ``hf://org/repo/path/in/repo.pth`` (``org/repo@revision`` picks a revision), fetched
            with ``huggingface_hub.hf_hub_download``. A URL or hub id may end in
            ``#sha256=<64 hex digits>`` to pin its content; the suffix is not sent to the server
            and not part of the cache entry, so pinned and unpinned specs share one cached file.
        cache_dir: where URLs are cached (default :func:`default_cache_dir`); for ``hf://`` ids,
            the Hugging Face cache folder (default: huggingface_hub's own).
        sha256: the expected sha256 of the file (64 hex digits, any case), like the suffix. The
            file is checked on every call; a cached download that does not match is removed and
            downloaded again.

    Raises:
        ValueError: a malformed spec or pin, or two different pins (argument and suffix).
        FileNotFoundError: a local path that does not exist.
        ChecksumMismatch: the file's sha256 is not the pin (a RuntimeError).
        RuntimeError: a URL or hub id that could not be fetched (network failure after the
            retries, or ``HF_HUB_OFFLINE=1``) and is not cached.
    """
    if not isinstance(spec, str | os.PathLike) or not str(spec).strip():
        raise ValueError(
            f"weights must be a file path, an http(s) URL or an hf:// id, got {spec!r}"
        )
    spec, pin = _split_pin(str(spec).strip())
    if sha256 is not None:
        argument_pin = _checked_sha256(sha256, "the sha256 argument")
        if pin is not None and pin != argument_pin:
            raise ValueError(
                f"two different sha256 pins for {spec}: sha256={argument_pin} and the "
                f"#{PIN_KEY}= suffix {pin}; give one"
            )
        pin = argument_pin
    if spec.startswith(("http://", "https://")):
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return _cached_download(spec, cache, pin)
    if spec.startswith(HF_PREFIX):
        path = _hub_download(spec, cache_dir)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "not found"
            raise FileNotFoundError(f"weights file {what}: {path}")
    if pin is not None and (found := file_sha256(path)) != pin:
        where = "" if str(path) == spec else f" ({path})"
        raise ChecksumMismatch(
            f"{spec}{where} has sha256 {found}, but the pin expects {pin}; the file is not used. "
            "Check the pin, or replace the file with the intended one"
        )
    return path


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, as 64 lower-case hex digits (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _checked_sha256(value: object, what: str) -> str:
    """``value`` as 64 lower-case hex digits, or a ValueError naming ``what``."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value.strip()):
        raise ValueError(f"{what} must be a sha256 digest of 64 hex digits, got {value!r}")
    return value.strip().lower()


def _split_pin(spec: str) -> tuple[str, str | None]:
    """A URL or hub id without its ``#sha256=<hex>`` suffix, and that pin (None without one).

    A URL's fragment is never sent to a server, so the only one accepted is the pin; local paths
    are left alone (``#`` is a valid file-name character).
    """
    if spec.startswith(("http://", "https://")):
        url, hashmark, fragment = spec.partition("#")
        if not hashmark:
            return spec, None
        key, _, value = fragment.partition("=")
        if key.lower() != PIN_KEY:
            raise ValueError(
                f"the only fragment a weights URL takes is #{PIN_KEY}=<64 hex digits>, got "
                f"#{fragment} in {spec!r}"
            )
        return url, _checked_sha256(value, f"the #{PIN_KEY}= suffix of {url}")
    if spec.startswith(HF_PREFIX):
        hub_id, suffix, value = spec.rpartition(f"#{PIN_KEY}=")
        if suffix:
            return hub_id, _checked_sha256(value, f"the #{PIN_KEY}= suffix of {hub_id}")
    return spec, None


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _fetch_error(
    source: str, reason: str, *, attempts: int | None = None, mismatch: bool = False
) -> RuntimeError:
    tries = "" if attempts is None else f" after {attempts} attempt{'s' * (attempts > 1)}"
    check = ", check its sha256 (e.g. with sha256sum)" if mismatch else ""
    return (ChecksumMismatch if mismatch else RuntimeError)(
        f"the file could not be fetched from {source}{tries}: {reason}. Download the file "
        f"manually (e.g. in a browser or with wget){check} and pass its local path instead."
    )


def cache_file_name(url: str) -> str:
    """``<hash>-<file name>``: the URL's file name, prefixed by 8 hex digits of its sha256."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "weights"
    return f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:8]}-{name}"


class _AttemptFailed(Exception):
    """One download attempt failed; ``transient`` says whether another may succeed."""

    def __init__(self, reason: str, *, transient: bool, digest: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.digest = digest  # the sha256 received, when the failure is a mismatch with the pin


def _cached_download(url: str, cache: Path, pin: str | None) -> Path:
    target = cache / cache_file_name(url)
    removed = ""
    if target.is_file():
        found = file_sha256(target) if pin is not None else None
        if found == pin:  # unpinned (both None), or the cached bytes are the pinned ones
            logger.debug("using the cached %s for %s", target, url)
            return target
        # Removed, not moved aside: the cache only holds our own downloads, which the URL can
        # reproduce; pinned and unpinned specs share the entry, so leaving it would keep handing
        # the unpinned spec a file its pin calls wrong; and a moved-aside copy is a large file
        # that nothing reads or cleans up.
        logger.warning(
            "the cached %s for %s has sha256 %s, but the pin expects %s: removing it and "
            "downloading again",
            target,
            url,
            found,
            pin,
        )
        target.unlink(missing_ok=True)
        removed = f" (a cached copy with sha256 {found}, not the pinned {pin}, was removed)"
    if _offline():
        raise _fetch_error(url, f"{OFFLINE_ENV} is set and {target} is not cached{removed}")
    cache.mkdir(parents=True, exist_ok=True)
    mismatches: list[str] = []
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            received, digest = _download_into(url, target, pin)
        except _AttemptFailed as exc:
            failure = exc
        else:
            logger.info("downloaded %s to %s (%d bytes, sha256 %s)", url, target, received, digest)
            return target
        if failure.digest is not None:
            mismatches.append(failure.digest)
        if not failure.transient or len(mismatches) >= MISMATCH_ATTEMPTS:
            break
        if attempt < DOWNLOAD_ATTEMPTS:
            delay = RETRY_BACKOFF_S * 2 ** (attempt - 1)
            logger.warning(
                "download attempt %d of %d for %s failed (%s); retrying in %.1f s",
                attempt,
                DOWNLOAD_ATTEMPTS,
                url,
                failure.reason,
                delay,
            )
            _sleep(delay)
    reason = failure.reason
    if len(mismatches) > 1 and len(set(mismatches)) == 1:
        reason += "; the same bytes came every time, so the pin is wrong or the file changed"
    raise _fetch_error(url, reason, attempts=attempt, mismatch=failure.digest is not None)


def _download_into(url: str, target: Path, pin: str | None) -> tuple[int, str]:
    """One attempt: download ``url`` to a temporary file next to ``target``, check its length
    and pin, and rename it onto ``target``. Returns (bytes received, sha256).

    Raises:
        _AttemptFailed: the attempt failed; the temporary file is gone.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected, digest = _download(url, out)
        if expected is not None and received != expected:
            reason = f"the download was cut short ({received} of {expected} bytes received)"
            raise _AttemptFailed(reason, transient=True)
        if pin is not None and digest != pin:
            reason = f"sha256 mismatch: expected {pin}, received {digest} ({received} bytes)"
            raise _AttemptFailed(reason, transient=True, digest=digest)
        os.replace(tmp, target)
    except (OSError, HTTPException) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise _AttemptFailed(f"{type(exc).__name__}: {exc}", transient=_transient(exc)) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left if the attempt failed
    return received, digest


def _transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: network trouble, not a refusal or a local error."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRY_HTTP_CODES or 500 <= exc.code < 600
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason  # the socket error underneath, or a message (unknown scheme, ...)
    if isinstance(exc, ssl.SSLCertVerificationError):  # the same certificate next time
        return False
    if isinstance(exc, socket.gaierror):  # an unknown host stays unknown; a busy resolver may not
        return exc.errno == socket.EAI_AGAIN
    # ConnectionError: refused, reset, aborted, RemoteDisconnected; HTTPException: IncompleteRead,
    # a garbled status line. A local OSError (disk full, permissions) is not retried.
    return isinstance(exc, ConnectionError | TimeoutError | HTTPException)


def _download(url: str, out: BinaryIO) -> tuple[int, int | None, str]:
    """Copy ``url`` into the open binary file ``out``, hashing as it goes.

    Returns (bytes received, Content-Length or None, sha256 of the bytes received).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "maft-plus"})
    logger.info("downloading %s", url)
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=expected, unit="B", unit_scale=True, desc=cache_file_name(url)[9:], disable=None
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    return received, expected, digest.hexdigest()


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
