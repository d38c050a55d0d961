"""Text classifier: a vocabulary's synonyms, through the 14 ViLD templates and the frozen CLIP text
tower, to one unit-norm embedding per synonym, cached per synonym in memory and on disk.

Shapes: S synonyms in the vocabulary, P templates (14), N sentences, D CLIP embedding dim.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.vocabulary import Vocabulary
from .text_embedding_cache import TextEmbeddingCache, disk_cache_enabled

logger = logging.getLogger(__name__)

# The ViLD prompt templates (design.md section 3); `{}` is replaced by a synonym.
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)


class TextEmbedder:
    """Maps a :class:`Vocabulary` to its (S, D) synonym embeddings, caching every synonym.

    A synonym's row: encode its P template sentences, L2-normalize each, average, L2-normalize
    again. Rows of synonyms seen before (in any earlier vocabulary) come from the in-memory cache
    without running the text encoder; with ``cache_identity``, rows also persist on disk across
    processes (see ``text_embedding_cache.py``). The arithmetic is done in float32; rows are
    returned in the dtype and on the device that ``encode_text`` gives (rows read from disk: on
    the device of the last encoded batch, else the CPU). If the text tower moves device or
    changes weights, call :meth:`clear_cache` (the disk cache needs no clearing: its key follows
    the identity).

    Args:
        encode_text: maps N sentences to their (N, D) un-normalized text embeddings.
        templates: P prompt templates, each with exactly one ``{}``.
        batch_size: the most sentences passed to ``encode_text`` at once. Sentences are sorted by
            length first, so a batch holds sentences of similar length.
        cache_identity: returns what, besides the sentence, determines ``encode_text``'s output
            (e.g. ``CLIPConvNeXt.text_identity``); None: no disk cache.
        disk_cache: False disables the disk cache (so does ``MAFT_PLUS_TEXT_CACHE=0``).
        cache_dir: the disk cache folder; default ``$MAFT_PLUS_CACHE/text_embeddings``, read at
            each lookup.
        max_cached_synonyms: the most rows the memory cache keeps, the least recently used
            dropped first (a long-lived server that sees new class names all day); None: no
            limit. A vocabulary larger than the limit is still embedded whole.
    """

    def __init__(
        self,
        *,
        encode_text: Callable[[list[str]], torch.Tensor],
        templates: Sequence[str] = TEMPLATES,
        batch_size: int = 256,
        cache_identity: Callable[[], Mapping[str, object]] | None = None,
        disk_cache: bool = True,
        cache_dir: str | Path | None = None,
        max_cached_synonyms: int | None = None,
    ) -> None:
        if isinstance(templates, str) or not templates:
            raise ValueError(f"templates must be a non-empty sequence of strings: {templates!r}")
        for template in templates:
            if not isinstance(template, str) or template.count("{}") != 1:
                raise ValueError(f"each template needs exactly one '{{}}', got {template!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.encode_text = encode_text
        self.templates = tuple(templates)
        self.batch_size = batch_size
        self.cache_identity = cache_identity
        self.disk_cache = disk_cache
        self.cache_dir = cache_dir
        self._cache: dict[str, torch.Tensor] = {}  # synonym -> (D,) unit-norm row, oldest use first
        self.max_cached_synonyms = max_cached_synonyms
        self._disk: TextEmbeddingCache | None = None  # the disk cache of the last identity seen
        self._device: torch.device | None = None  # where encode_text put its last embeddings
        # The last vocabulary and its stacked (S, D) rows: a repeated vocabulary is one lookup.
        self._last: tuple[Vocabulary, torch.Tensor] | None = None

    def __call__(self, vocabulary: Vocabulary) -> torch.Tensor:
        """Embed every synonym of ``vocabulary``.

        Returns:
            (S, D) unit-norm rows in ``vocabulary.synonyms`` order, detached.
        """
        if not isinstance(vocabulary, Vocabulary):
            raise ValueError(f"expected a Vocabulary, got {type(vocabulary).__name__}")
        if self._last is not None and self._last[0] == vocabulary:
            return self._last[1]
        synonyms = vocabulary.synonyms
        new = [name for name in dict.fromkeys(synonyms) if name not in self._cache]
        disk = self._disk_cache() if new else None
        if disk is not None:
            for name, row in disk.load(new).items():
                self._cache[name] = row if self._device is None else row.to(self._device)
            new = [name for name in new if name not in self._cache]
        if new:
            encoded = self._encode(new)  # (S', D)
            self._device = encoded.device
            self._cache.update(zip(new, encoded, strict=True))
            if disk is not None:
                disk.save(new, encoded)
        rows = [self._cache[name] for name in synonyms]
        stacked = torch.stack([row.to(rows[-1].device) for row in rows])  # (S, D)
        self._last = (vocabulary, stacked)
        if self._max_cached is not None:
            for name in dict.fromkeys(synonyms):  # just used: to the end of the order
                self._cache[name] = self._cache.pop(name)
            self._evict()
        return stacked

    @property
    def max_cached_synonyms(self) -> int | None:
        return self._max_cached

    @max_cached_synonyms.setter
    def max_cached_synonyms(self, limit: int | None) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"max_cached_synonyms must be a positive int or None, got {limit!r}")
        self._max_cached = limit
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used rows past ``max_cached_synonyms``."""
        if self._max_cached is not None:
            for name in list(self._cache)[: max(0, len(self._cache) - self._max_cached)]:
                del self._cache[name]

    def clear_cache(self) -> None:
        """Forget every synonym embedding held in memory (the disk cache is keyed, not cleared)."""
        self._cache.clear()
        self._last = None

    def _disk_cache(self) -> TextEmbeddingCache | None:
        """The disk cache of the current identity, or None when disabled."""
        if self.cache_identity is None or not self.disk_cache or not disk_cache_enabled():
            return None
        identity = {**self.cache_identity(), "templates": list(self.templates)}
        root = Path(self.cache_dir).expanduser() if self.cache_dir is not None else None
        disk = TextEmbeddingCache(identity=identity, root=root)
        if self._disk is None or self._disk.directory != disk.directory:
            self._disk = disk  # a new identity or folder: start from its files
        return self._disk

    def _encode(self, synonyms: list[str]) -> torch.Tensor:
        """(S', D) embeddings of ``synonyms``, running ``encode_text`` in batches of sentences."""
        num_templates = len(self.templates)
        sentences = [t.replace("{}", name) for name in synonyms for t in self.templates]  # S'*P
        owners = torch.arange(len(synonyms)).repeat_interleave(num_templates)  # (S'*P,)
        # similar lengths in a batch let a truncating encoder stop early; rows go to their owner
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        sentences = [sentences[i] for i in order]
        owners = owners[order]  # (S'*P,)
        sums: torch.Tensor | None = None  # (S', D) sum of unit-norm sentence embeddings
        out_dtype = None
        for start in range(0, len(sentences), self.batch_size):
            batch = sentences[start : start + self.batch_size]
            # detach: the text tower is frozen; the cached rows must hold no autograd graph
            embeds = self.encode_text(batch).detach()  # (N, D)
            if embeds.dim() != 2 or embeds.shape[0] != len(batch):
                raise ValueError(
                    f"encode_text must return ({len(batch)}, D) for {len(batch)} sentences, "
                    f"got {tuple(embeds.shape)}"
                )
            if sums is None:
                out_dtype = embeds.dtype
                sums = embeds.new_zeros(len(synonyms), embeds.shape[1], dtype=torch.float32)
            owner = owners[start : start + len(batch)].to(embeds.device)  # (N,)
            sums.index_add_(0, owner, F.normalize(embeds.float(), dim=-1))
        logger.debug("encoded %d synonyms (%d sentences)", len(synonyms), len(sentences))
        return F.normalize(sums / num_templates, dim=-1).to(out_dtype)  # (S', D)
