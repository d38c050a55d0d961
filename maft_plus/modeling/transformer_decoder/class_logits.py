"""Class logits from synonym logits: each class takes the max over its synonyms; void passes.

Shapes: S synonyms in the vocabulary, K classes (S >= K); the last of the S+1 logit columns is void.
"""

from typing import NamedTuple

import torch


def synonym_logits_to_class_logits(
    logits: torch.Tensor, synonym_to_class: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Max over the synonyms of each class, with the void column appended unchanged.

    The max is a ``scatter_reduce(amax)``, so the gradient of a class logit goes to the synonym(s)
    holding the max only (split evenly on exact ties).

    Args:
        logits: (..., S+1) logits against every synonym row, void last.
        synonym_to_class: (S,) long, the class index in [0, K) of each synonym. A class with no
            synonym gets ``-inf``.
        num_classes: K.

    Returns:
        (..., K+1) class logits, void last.
    """
    num_synonyms = logits.shape[-1] - 1
    if synonym_to_class.dim() != 1 or synonym_to_class.shape[0] != num_synonyms:
        raise ValueError(
            f"synonym_to_class must have shape (S,) = ({num_synonyms},) to match logits with S+1 = "
            f"{logits.shape[-1]} columns (void last), got {tuple(synonym_to_class.shape)}"
        )
    if num_classes < 1 or num_classes > num_synonyms:
        raise ValueError(
            f"num_classes must be in [1, S={num_synonyms}] (every class has a synonym), "
            f"got {num_classes}"
        )
    synonym_logits, void_logits = logits[..., :-1], logits[..., -1:]  # (..., S), (..., 1)
    index = synonym_to_class.to(logits.device).expand_as(synonym_logits)  # (..., S)
    empty = synonym_logits.new_full((*synonym_logits.shape[:-1], num_classes), float("-inf"))
    class_logits = empty.scatter_reduce(-1, index, synonym_logits, reduce="amax")  # (..., K)
    return torch.cat((class_logits, void_logits), dim=-1)  # (..., K+1)


class TextClasses(NamedTuple):
    """The vocabulary as both classifiers see it: text rows and the synonym -> class map."""

    embeds: torch.Tensor  # (S+1, D) L2-normalized text rows, void last
    synonym_to_class: torch.Tensor  # (S,) long, the class index in [0, K) of each synonym
    num_classes: int  # K

    def class_logits(self, synonym_logits: torch.Tensor) -> torch.Tensor:
        """(..., S+1) synonym logits -> (..., K+1) class logits (the function above)."""
        return synonym_logits_to_class_logits(
            synonym_logits, self.synonym_to_class, self.num_classes
        )
