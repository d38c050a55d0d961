"""Class probabilities of the queries, and the input checks every inference rule shares.

Shapes: B batch, Q queries, K classes (+1 the void column), h x w the predicted mask logits.
"""

from collections.abc import Sequence

import torch


def classification_probs(
    in_vocab_logits: torch.Tensor, out_vocab_logits: torch.Tensor
) -> torch.Tensor:
    """Class probabilities: void from the in-vocabulary classifier, classes from the other one.

    ``p_void = softmax(in_vocab_logits)[..., -1]`` and
    ``p_cls = softmax(out_vocab_logits[..., :K]) * (1 - p_void)``; the last out-of-vocabulary column
    is ignored.

    Args:
        in_vocab_logits: (B, Q, K+1) logits of the in-vocabulary classifier (last column void).
        out_vocab_logits: (B, Q, K+1) logits of the out-of-vocabulary (CLIP) classifier.

    Returns:
        (B, Q, K+1) probabilities ``[p_cls, p_void]``; every row sums to 1.
    """
    if in_vocab_logits.shape != out_vocab_logits.shape or in_vocab_logits.shape[-1] < 2:
        raise ValueError(
            "classification_probs expects in_vocab_logits and out_vocab_logits of the same shape "
            f"(B, Q, K+1) with K >= 1, got {tuple(in_vocab_logits.shape)} and "
            f"{tuple(out_vocab_logits.shape)}"
        )
    void_probs = in_vocab_logits.softmax(dim=-1)[..., -1:]  # (B, Q, 1)
    class_probs = out_vocab_logits[..., :-1].softmax(dim=-1) * (1.0 - void_probs)  # (B, Q, K)
    return torch.cat([class_probs, void_probs], dim=-1)  # (B, Q, K+1)


def check_query_inputs(name: str, class_probs: torch.Tensor, mask_logits: torch.Tensor) -> int:
    """Check (Q, K+1) probabilities against (Q, h, w) mask logits; return K."""
    if class_probs.dim() != 2 or class_probs.shape[-1] < 2:
        raise ValueError(
            f"{name} expects class_probs of shape (Q, K+1) with K >= 1, "
            f"got {tuple(class_probs.shape)}"
        )
    if mask_logits.dim() != 3 or mask_logits.shape[0] != class_probs.shape[0]:
        raise ValueError(
            f"{name} expects mask_logits of shape (Q, h, w) with the Q of class_probs "
            f"{tuple(class_probs.shape)}, got {tuple(mask_logits.shape)}"
        )
    return class_probs.shape[-1] - 1


def check_is_thing(name: str, is_thing: Sequence[bool], num_classes: int) -> None:
    if len(is_thing) != num_classes:
        raise ValueError(
            f"{name} expects is_thing with one entry per class (K = {num_classes}), "
            f"got {len(is_thing)} entries"
        )
