"""Text classifier: a vocabulary's synonyms, through the 14 ViLD templates and the frozen CLIP text
tower, to one unit-norm embedding per synonym, cached per synonym.

Shapes: S synonyms in the vocabulary, P templates (14), N sentences, D CLIP embedding dim.
"""

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..data.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

# The ViLD prompt templates (SPEC section 3); `{}` is replaced by a synonym.
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
    again. Rows of synonyms seen before (in any earlier vocabulary) come from the cache without
    running the text encoder. The arithmetic is done in float32; rows are returned in the dtype and
    on the device that ``encode_text`` gives. If the text tower moves device or changes weights,
    call :meth:`clear_cache`.

    Args:
        encode_text: maps N sentences to their (N, D) un-normalized text embeddings.
        templates: P prompt templates, each with exactly one ``{}``.
        batch_size: the most sentences passed to ``encode_text`` at once.
    """

    def __init__(
        self,
        *,
        encode_text: Callable[[list[str]], torch.Tensor],
        templates: Sequence[str] = TEMPLATES,
        batch_size: int = 256,
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
        self._cache: dict[str, torch.Tensor] = {}  # synonym -> (D,) unit-norm embedding

    def __call__(self, vocabulary: Vocabulary) -> torch.Tensor:
        """Embed every synonym of ``vocabulary``.

        Returns:
            (S, D) unit-norm rows in ``vocabulary.synonyms`` order, detached.
        """
        if not isinstance(vocabulary, Vocabulary):
            raise ValueError(f"expected a Vocabulary, got {type(vocabulary).__name__}")
        synonyms = vocabulary.synonyms
        new = [name for name in dict.fromkeys(synonyms) if name not in self._cache]
        if new:
            self._cache.update(zip(new, self._encode(new), strict=True))
        return torch.stack([self._cache[name] for name in synonyms])  # (S, D)

    def clear_cache(self) -> None:
        """Forget every cached synonym embedding."""
        self._cache.clear()

    def _encode(self, synonyms: list[str]) -> torch.Tensor:
        """(S', D) embeddings of ``synonyms``, running ``encode_text`` in batches of sentences."""
        num_templates = len(self.templates)
        sentences = [t.replace("{}", name) for name in synonyms for t in self.templates]  # S'*P
        owners = torch.arange(len(synonyms)).repeat_interleave(num_templates)  # (S'*P,)
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
