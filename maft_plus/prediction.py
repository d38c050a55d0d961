"""What the predictor returns: segments and predictions, and the conversion of model outputs.

Shapes: H x W the original image (after EXIF orientation), K classes, N instances.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .data.vocabulary import Vocabulary

__all__ = ["TASK_NAMES", "Prediction", "Segment", "enlarge", "to_prediction"]

TASK_NAMES = ("semantic", "panoptic", "instance")


@dataclass
class Segment:
    """One region of a prediction.

    Attributes:
        id: semantic: the class id; panoptic: the segment id in ``segment_map``; instance: the
            instance's 1-based rank in the model's output.
        label: class id, an index into ``Prediction.class_names``.
        name: the class's display name (its first synonym).
        score: semantic: the mean score of the class over the segment's pixels; panoptic: the
            class probability of the segment's query; instance: the instance score.
        is_thing: whether the class is a thing (else stuff) in the vocabulary.
        mask: (H, W) bool pixels of the segment.
    """

    id: int
    label: int
    name: str
    score: float
    is_thing: bool
    mask: np.ndarray


@dataclass
class Prediction:
    """The result of :meth:`Predictor.predict`, at the original image size.

    Attributes:
        task: "semantic", "panoptic" or "instance".
        label_map: (H, W) int32 class id of each pixel. Semantic: the argmax of the class scores;
            panoptic: the class of the pixel's segment, -1 where none; instance: the class of the
            highest-scoring instance covering the pixel, -1 where none.
        segments: semantic: one per class present in ``label_map``; panoptic: one per segment;
            instance: one per instance (masks may overlap), in the model's order.
        class_names: the K class display names of the vocabulary (first synonyms), by class id.
        segment_map: panoptic only: (H, W) int32 segment ids, 0 = no segment.
    """

    task: str
    label_map: np.ndarray
    segments: list[Segment]
    class_names: list[str]
    segment_map: np.ndarray | None = None


def to_prediction(
    output: dict, vocabulary: Vocabulary, task: str, *, min_score: float = 0.0
) -> Prediction:
    """Convert one image's MAFTPlus output dict (detectron2 format) into a :class:`Prediction`.

    Args:
        output: semantic: ``sem_seg_labels`` (H, W) with ``sem_seg_confidence`` (H, W), or
            ``sem_seg`` (K, H, W) scores; panoptic: ``panoptic_seg`` ((H, W) ids,
            segments_info with scores); instance: ``instances``.
        vocabulary: the K classes the model segmented.
        task: "semantic", "panoptic" or "instance".
        min_score: instance task: the lowest instance score kept.
    """
    if task == "semantic":
        if "sem_seg_labels" in output:
            labels, scores = output["sem_seg_labels"], output["sem_seg_confidence"]
        else:
            scores, labels = output["sem_seg"].max(dim=0)  # (H, W), (H, W)
        return _semantic_prediction(labels, scores, vocabulary)
    if task == "panoptic":
        return _panoptic_prediction(output["panoptic_seg"], vocabulary)
    if task == "instance":
        instances = output["instances"]
        return _instance_prediction(instances[instances.scores >= min_score], vocabulary)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASK_NAMES)}")


def _semantic_prediction(labels: torch.Tensor, scores: torch.Tensor, vocab: Vocabulary):
    """labels: (H, W) class ids; scores: (H, W) their scores. A segment's score is the mean."""
    num_classes = vocab.num_classes
    counts = torch.bincount(labels.flatten(), minlength=num_classes)  # (K,)
    sums = torch.bincount(
        labels.flatten(), weights=scores.flatten().double(), minlength=num_classes
    )  # (K,) sum of each class's score over its pixels
    label_map = labels.to(torch.int32).cpu().numpy()
    segments = [
        _segment(k, k, float(sums[k] / counts[k]), label_map == k, vocab)
        for k in torch.nonzero(counts).flatten().tolist()
    ]
    return Prediction("semantic", label_map, segments, list(vocab.class_names))


def _panoptic_prediction(
    panoptic_seg: tuple[torch.Tensor, list[dict]], vocab: Vocabulary
) -> Prediction:
    """panoptic_seg: ((H, W) segment ids, segments_info with each segment's class score)."""
    segment_ids, segments_info = panoptic_seg
    segment_map = segment_ids.to(torch.int32).cpu().numpy()
    label_map = np.full(segment_map.shape, -1, dtype=np.int32)
    segments = []
    for info in segments_info:
        label = int(info["category_id"])
        pixels = segment_ids == info["id"]  # (H, W) on the model's device
        score = float(info["score"])
        mask = pixels.cpu().numpy()
        label_map[mask] = label
        segments.append(_segment(int(info["id"]), label, score, mask, vocab))
    return Prediction("panoptic", label_map, segments, list(vocab.class_names), segment_map)


def _instance_prediction(instances, vocab: Vocabulary) -> Prediction:
    """instances: detectron2 Instances with pred_masks (N, H, W), scores (N,), pred_classes."""
    masks = instances.pred_masks.cpu().numpy()  # (N, H, W) bool
    scores = instances.scores.cpu().tolist()
    labels = instances.pred_classes.cpu().tolist()
    label_map = np.full(instances.image_size, -1, dtype=np.int32)
    # Paint from the lowest score up so the best instance wins (the earlier one on a tie).
    for n in sorted(range(len(scores)), key=lambda n: (scores[n], -n)):
        label_map[masks[n]] = labels[n]
    segments = [_segment(n + 1, labels[n], scores[n], masks[n], vocab) for n in range(len(scores))]
    return Prediction("instance", label_map, segments, list(vocab.class_names))


def _segment(segment_id: int, label: int, score: float, mask: np.ndarray, vocab: Vocabulary):
    return Segment(
        id=segment_id,
        label=label,
        name=vocab.class_names[label],
        score=score,
        is_thing=vocab.is_thing[label],
        mask=mask,
    )


def enlarge(prediction: Prediction, height: int, width: int) -> Prediction:
    """``prediction`` with every map and mask enlarged to (height, width), nearest neighbour."""
    small_h, small_w = prediction.label_map.shape
    rows = ((np.arange(height) + 0.5) * small_h / height).astype(np.int64)  # (H,) source rows
    cols = ((np.arange(width) + 0.5) * small_w / width).astype(np.int64)  # (W,) source columns
    rows, cols = np.minimum(rows, small_h - 1)[:, None], np.minimum(cols, small_w - 1)[None, :]
    segments = [
        Segment(s.id, s.label, s.name, s.score, s.is_thing, s.mask[rows, cols])  # (H, W)
        for s in prediction.segments
    ]
    segment_map = prediction.segment_map
    return Prediction(
        prediction.task,
        prediction.label_map[rows, cols],  # (H, W)
        segments,
        prediction.class_names,
        None if segment_map is None else segment_map[rows, cols],  # (H, W)
    )
