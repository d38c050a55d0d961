"""On-disk cache of frozen CLIP text embeddings: synonym rows, keyed by all that determines them.

Shapes: S synonyms, D CLIP embedding dim.

Layout: ``$MAFT_PLUS_CACHE/text_embeddings/<key digest>/<synonyms digest>.pt`` (default root
``~/.cache/maft_plus``). The key digest is a sha256 of the identity: CLIP model name, weights
identity, dtype, open_clip version (from the backbone), the prompt templates and a format version.
Each file holds the rows of one batch of synonyms encoded together (typically one vocabulary's new
synonyms) as ``{"key": str, "synonyms": list[str], "embeds": (S, D) tensor}``.

Why one file per encoded batch, looked up per synonym: a vocabulary is written and read as one
file (ADE-847 is one file, not 1,342), while rows are found by synonym in any file of the key, so
vocabularies sharing names (COCO and ADE-150 share many) reuse each other's rows.

Files are written to a temporary name and moved into place with ``os.replace``, so a reader or a
concurrent writer never sees a partial file; two processes writing the same batch write the same
content. Files are read with ``torch.load(weights_only=True)``; an unreadable or foreign file is
skipped with a warning (its synonyms are recomputed and the file rewritten). Set
``MAFT_PLUS_TEXT_CACHE=0`` to disable the cache.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..weights import default_cache_dir

logger = logging.getLogger(__name__)

ENABLE_ENV = "MAFT_PLUS_TEXT_CACHE"  # "0", "false", "no" or "off" disables the disk cache
SUBDIR = "text_embeddings"
FORMAT_VERSION = 1  # bump when the file layout or the embedding recipe changes
_OFF = ("0", "false", "no", "off")


def disk_cache_enabled() -> bool:
    """False when ``$MAFT_PLUS_TEXT_CACHE`` is 0 / false / no / off."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in _OFF


def default_cache_root() -> Path:
    """``$MAFT_PLUS_CACHE/text_embeddings``, else ``~/.cache/maft_plus/text_embeddings``."""
    return default_cache_dir() / SUBDIR


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class TextEmbeddingCache:
    """The cached synonym rows of one identity, in one folder.

    Args:
        identity: everything besides the synonym that determines its row (JSON-serializable).
        root: the cache folder; default ``default_cache_root()`` at construction time.
    """

    def __init__(self, *, identity: Mapping[str, object], root: Path | None = None) -> None:
        self.key = json.dumps({"format": FORMAT_VERSION, **identity}, sort_keys=True)
        self.directory = Path(root if root is not None else default_cache_root()) / _digest(
            self.key
        )
        self._read_files: set[str] = set()  # file names already read (or found unreadable)
        self._rows: dict[str, torch.Tensor] = {}  # synonym -> (D,) row read from disk

    def load(self, synonyms: Sequence[str]) -> dict[str, torch.Tensor]:
        """The cached (D,) CPU rows of those ``synonyms`` that are on disk."""
        if any(name not in self._rows for name in synonyms):
            self._read_new_files()  # another process may have written them since
        return {name: self._rows[name] for name in synonyms if name in self._rows}

    def save(self, synonyms: Sequence[str], embeds: torch.Tensor) -> Path | None:
        """Write the rows of ``synonyms`` atomically; return the file, or None if writing failed.

        Args:
            embeds: (S, D) rows, in ``synonyms`` order.
        """
        if embeds.dim() != 2 or embeds.shape[0] != len(synonyms):
            raise ValueError(
                f"embeds must be ({len(synonyms)}, D) for {len(synonyms)} synonyms, "
                f"got {tuple(embeds.shape)}"
            )
        # detach: cached rows come from the frozen text tower and hold no autograd graph
        embeds = embeds.detach().cpu().contiguous()
        path = self.directory / f"{_digest(chr(10).join(synonyms))}.pt"
        record = {"key": self.key, "synonyms": list(synonyms), "embeds": embeds}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pt")
            try:
                with os.fdopen(handle, "wb") as out:
                    torch.save(record, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # a read-only or full disk must not stop inference
            logger.warning("could not write the text-embedding cache file %s: %s", path, exc)
            return None
        self._read_files.add(path.name)
        self._rows.update(zip(synonyms, embeds, strict=True))
        logger.debug("cached %d synonym embeddings in %s", len(synonyms), path)
        return path

    def _read_new_files(self) -> None:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.pt")):  # temporary files start with '.'
            if path.name in self._read_files:
                continue
            self._read_files.add(path.name)
            try:
                synonyms, embeds = self._read(path)
            except Exception as exc:  # torch.load raises many kinds for truncated/foreign files
                logger.warning(
                    "ignoring the unreadable text-embedding cache file %s (%s); its embeddings "
                    "will be recomputed",
                    path,
                    exc,
                )
                continue
            self._rows.update(zip(synonyms, embeds, strict=True))

    def _read(self, path: Path) -> tuple[list[str], torch.Tensor]:
        record = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(record, dict) or record.get("key") != self.key:
            raise ValueError("not a cache file of this identity")
        synonyms, embeds = record["synonyms"], record["embeds"]
        if (
            not isinstance(synonyms, list)
            or not all(isinstance(name, str) for name in synonyms)
            or not isinstance(embeds, torch.Tensor)
            or embeds.dim() != 2
            or embeds.shape[0] != len(synonyms)
        ):
            raise ValueError("malformed synonyms or embeds")
        return synonyms, embeds
