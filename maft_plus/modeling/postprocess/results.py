"""One image's inference results for the tasks asked: the dispatch from predictions to outputs.

Which tasks a call computes is an explicit :class:`Tasks` value, passed from the caller (the
predictor, the evaluation loop) down to here; the model holds only the configured default.

Shapes: Q queries, K classes (+1 the void column), h x w the predicted mask logits, H x W the
output size.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess

from .instance import instance_inference
from .labelling import semantic_labels
from .panoptic import panoptic_inference
from .semantic import semantic_inference
from .sizes import ImageSizes

SEMANTIC_OUTPUTS = ("labels", "scores")  # see MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT


@dataclass(frozen=True)
class Tasks:
    """Which outputs to compute: semantic, panoptic and/or instance segmentation."""

    semantic: bool = True
    panoptic: bool = False
    instance: bool = False

    def __post_init__(self) -> None:
        if not (self.semantic or self.panoptic or self.instance):
            raise ValueError(
                "ask for at least one task (MODEL.MAFT_PLUS.TEST.{SEMANTIC,PANOPTIC,INSTANCE}_ON)"
            )


@dataclass(frozen=True)
class InferenceOptions:
    """The post-processing settings of ``MODEL.MAFT_PLUS.TEST`` (see ``maft_plus/config.py``)."""

    semantic_output: str = "labels"
    object_mask_threshold: float = 0.2
    overlap_threshold: float = 0.7
    instance_top_k: int = 100
    semantic_chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.semantic_output not in SEMANTIC_OUTPUTS:
            raise ValueError(
                f"MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT must be one of {SEMANTIC_OUTPUTS}, "
                f"got {self.semantic_output!r}"
            )


def image_results(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    sizes: ImageSizes,
    *,
    is_thing: Sequence[bool],
    tasks: Tasks,
    options: InferenceOptions,
) -> dict:
    """The detectron2-style results of one image.

    Semantic alone is computed from the masks at the network's input size (`semantic_labels` or
    `semantic_inference`); with panoptic or instance output the masks are first resized to the
    output size, and semantic output, if asked too, comes from those, as released.

    Args:
        class_probs: (Q, K+1) class probabilities (``classification_probs``).
        mask_logits: (Q, h, w) mask logits.
        sizes: the padded network input's, the image's in it and the results' (H, W).
        is_thing: K thing flags.

    Returns:
        ``sem_seg_labels`` and ``sem_seg_confidence`` (H, W), or ``sem_seg`` (K, H, W)
        (``options.semantic_output``); ``panoptic_seg``; ``instances``: as asked.
    """
    result = {}
    if tasks.semantic and not (tasks.panoptic or tasks.instance):
        return _semantic(class_probs, mask_logits, sizes, options)
    full_masks = F.interpolate(
        mask_logits[None], size=sizes.padded_size, mode="bilinear", align_corners=False
    )[0]  # (Q, padded H, padded W)
    full_masks = sem_seg_postprocess(full_masks, sizes.image_size, *sizes.output_size)  # (Q, H, W)
    if tasks.semantic:  # as released: from the masks resized to the output size
        output_only = ImageSizes(*(sizes.output_size,) * 3)
        result.update(_semantic(class_probs, full_masks, output_only, options))
    if tasks.panoptic:
        result["panoptic_seg"] = panoptic_inference(
            class_probs,
            full_masks,
            is_thing,
            object_mask_threshold=options.object_mask_threshold,
            overlap_threshold=options.overlap_threshold,
        )
    if tasks.instance:
        result["instances"] = instance_inference(
            class_probs, full_masks, is_thing, top_k=options.instance_top_k
        )
    return result


def _semantic(
    class_probs: torch.Tensor,
    mask_logits: torch.Tensor,
    sizes: ImageSizes,
    options: InferenceOptions,
) -> dict:
    """One image's semantic output in the configured form."""
    chunk_size = options.semantic_chunk_size
    if options.semantic_output == "scores":
        scores = semantic_inference(class_probs, mask_logits, sizes, chunk_size=chunk_size)
        return {"sem_seg": scores}  # (K, H, W)
    labels, confidence = semantic_labels(class_probs, mask_logits, sizes, chunk_size=chunk_size)
    return {"sem_seg_labels": labels, "sem_seg_confidence": confidence}  # (H, W) each
