"""Semantic segmentation scores: ``sem_seg[k] = sum_q p[q, k] * sigmoid(mask_q)`` per class.

The dense (K, H, W) rule of the released code, computed a chunk of classes at a time, and the
pieces `labelling.py` shares with it.

Shapes: Q queries, K classes (+1 the void column), h x w the predicted mask logits, H x W the
output size (the original image height, width).
"""

import torch
import torch.nn.functional as F

from .probabilities import check_query_inputs
from .sizes import ImageSizes

# A chunk of scores holds at most this many values (64 MiB in float32) whatever the output size
# and the number of classes: a very large image goes through one class at a time.
MAX_CHUNK_ELEMENTS = 2**24


def check_semantic_sizes(
    class_probs: torch.Tensor, mask_logits: torch.Tensor, sizes: ImageSizes
) -> None:
    """Raise a ValueError naming the input unless the shapes and sizes fit together."""
    check_query_inputs("semantic inference", class_probs, mask_logits)
    sizes.check("semantic inference")


def class_weights(class_probs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(K, Q) weights ``softmax(log(class_probs + 1e-8))[:, :K]`` transposed, in ``dtype``."""
    mask_cls = torch.log(class_probs + 1e-8)  # (Q, K+1)
    return mask_cls.softmax(dim=-1)[:, :-1].to(dtype).t()  # (K, Q)


def _semantic_masks(
    class_probs: torch.Tensor, mask_logits: torch.Tensor, sizes: ImageSizes
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the semantic scores: class weights and cropped mask probabilities.

    Returns:
        (K, Q) weights (`class_weights`) and the (Q, image H, image W) sigmoids of the mask
        logits upsampled to ``sizes.padded_size`` and cropped to ``sizes.image_size``.
    """
    check_semantic_sizes(class_probs, mask_logits, sizes)
    padded_size, image_size = sizes.padded_size, sizes.image_size
    if tuple(mask_logits.shape[-2:]) == tuple(padded_size):
        masks = mask_logits.sigmoid()  # (Q, padded H, padded W), a new tensor
    else:  # upsampled into a new tensor, which then takes its sigmoid in place
        masks = F.interpolate(
            mask_logits[None], size=tuple(padded_size), mode="bilinear", align_corners=False
        )[0].sigmoid_()  # (Q, padded H, padded W)
    # The sum over queries is per pixel, so cropping before combining gives the same values.
    masks = masks[:, : image_size[0], : image_size[1]].contiguous()  # (Q, image H, image W)
    return class_weights(class_probs, masks.dtype), masks


def class_chunks(num_classes: int, chunk_size: int, output_size: tuple[int, int]) -> range:
    """Start indices of class chunks: at most ``chunk_size`` classes, ``MAX_CHUNK_ELEMENTS``."""
    if chunk_size < 1:
        raise ValueError(f"semantic inference expects chunk_size >= 1, got {chunk_size}")
    per_class = max(output_size[0] * output_size[1], 1)
    return range(0, num_classes, max(1, min(chunk_size, MAX_CHUNK_ELEMENTS // per_class)))


def _chunk_scores(
    probs_t: torch.Tensor, masks: torch.Tensor, output_size: tuple[int, int], out: torch.Tensor
) -> torch.Tensor:
    """Scores of a few classes at the output size: ``probs_t @ masks``, resized bilinearly.

    Args:
        probs_t: (k, Q) class weights of the chunk.
        masks: (Q, image H, image W) mask probabilities.
        output_size: (H, W).
        out: (k, H, W) contiguous buffer to write into.

    Returns:
        ``out``, holding the (k, H, W) scores.
    """
    num, image_hw = probs_t.shape[0], tuple(masks.shape[-2:])
    masks_flat = masks.view(masks.shape[0], -1)  # (Q, image H*W)
    if image_hw == tuple(output_size):
        return torch.mm(probs_t, masks_flat, out=out.view(num, -1)).view_as(out)
    scores = (probs_t @ masks_flat).view(num, *image_hw)  # (k, image H, image W)
    resized = F.interpolate(
        scores[None], size=tuple(output_size), mode="bilinear", align_corners=False
    )[0]  # (k, H, W)
    return out.copy_(resized)


def semantic_inference(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    sizes: ImageSizes,
    *,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Per-class semantic scores ``sem_seg[k] = sum_q p[q, k] * sigmoid(mask_q)``, output size.

    ``p = softmax(log(class_probs + 1e-8))[:, :K]``. The mask logits are upsampled bilinearly
    (align_corners False) to ``sizes.padded_size``, passed through a sigmoid, combined with
    ``p``, cropped (top-left) to ``sizes.image_size`` and resized bilinearly (align_corners
    False) to ``sizes.output_size``. Classes are processed ``chunk_size`` at a time (fewer for
    very large outputs) so that no (K, padded H, padded W) intermediate is built; the result does
    not depend on the chunking. The (K, H, W) result itself grows with K: `semantic_labels` does
    not.

    Args:
        class_probs: (Q, K+1) class probabilities, last column void (see `classification_probs`).
        mask_logits: (Q, h, w) mask logits.
        sizes: the padded input's, the image's (at most the padded) and the output's (H, W).
        chunk_size: number of classes combined at once (memory bound only).

    Returns:
        (K, H, W) semantic scores in the dtype of ``mask_logits``; the prediction is the argmax.
    """
    probs_t, masks = _semantic_masks(class_probs, mask_logits, sizes)
    output_size = sizes.output_size
    num_classes = probs_t.shape[0]
    sem_seg = masks.new_empty((num_classes, *output_size))  # (K, H, W)
    chunks = class_chunks(num_classes, chunk_size, output_size)
    for start in chunks:
        stop = min(start + chunks.step, num_classes)
        _chunk_scores(probs_t[start:stop], masks, output_size, out=sem_seg[start:stop])
    return sem_seg
