"""Semantic-segmentation metrics with both mIoU definitions in circulation (current and legacy).

detectron2's ``SemSegEvaluator`` accumulates a confusion matrix and reports the current mIoU; this
module adds the legacy mIoU of detectron2 v0.6 (the one the released MAFT+ evaluator reports) and a
pure function that computes every metric from a confusion matrix.

Confusion-matrix convention (detectron2's): ``conf_matrix[p, g]`` counts the pixels predicted as
class ``p`` whose ground truth is class ``g``; rows are predictions, columns are ground truth.
It is (K+1, K+1): index K is "ignore" (ground truth equal to the dataset's ``ignore_label``), so
column K holds the ignored pixels and row K stays empty (predictions are an argmax over K classes).
Every metric reads only the top-left (K, K) block: ignored pixels count nowhere, not even as a
prediction.

A ground-truth label that cannot be scored (unreadable, not the prediction's size, or holding ids
outside 0..K-1 other than the ignore label) is left out of the matrix and reported with its file
name; it never stops the evaluation nor silently corrupts the matrix.

Shapes: K classes; H, W the prediction (= label) size.
"""

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from detectron2.evaluation import SemSegEvaluator
from detectron2.evaluation.sem_seg_evaluation import load_image_into_numpy_array
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..data.dataset_mappers.semantic_mapper import check_label_ids
from ..data.skip_records import IMAGE_READ_ERRORS, SkippedRecordError, skip_record
from ..files import write_atomically

logger = logging.getLogger(__name__)


def segmentation_metrics(conf_matrix: np.ndarray) -> dict:
    """All semantic-segmentation metrics of a confusion matrix, in percent.

    Args:
        conf_matrix: (K+1, K+1) pixel counts, rows = prediction, columns = ground truth, index K =
            ignore (see the module docstring). Only the (K, K) block without ignore is read.

    With ``tp[k]`` the pixels of class k predicted as k, ``gt[k]`` the (non-ignored) pixels whose
    ground truth is k, ``pred[k]`` the non-ignored pixels predicted as k, and
    ``IoU[k] = tp[k] / (gt[k] + pred[k] - tp[k])`` defined for the classes present in the ground
    truth (``gt[k] > 0``, set G):

    - ``mIoU``: current detectron2 definition, the mean of IoU[k] over G.
    - ``mIoU_legacy``: detectron2 v0.6 definition, reported by the released MAFT+ evaluator: the
      sum of IoU[k] over G divided by the number of classes present in the ground truth OR in the
      prediction (``gt[k] + pred[k] > 0``, set U). A class predicted somewhere but absent from the
      ground truth adds 0 to the sum and 1 to the count, so ``mIoU_legacy <= mIoU``, with equality
      when every predicted class is in G. Predictions on ignored pixels do not put a class in U.
    - ``fwIoU``: IoU[k] weighted by the ground-truth frequency ``gt[k] / sum(gt)``, summed over G.
    - ``mACC``: the mean over G of the per-class recall ``tp[k] / gt[k]``.
    - ``pACC``: ``sum(tp) / sum(gt)``, the fraction of non-ignored pixels predicted correctly.

    Returns:
        ``mIoU``, ``mIoU_legacy``, ``fwIoU``, ``mACC``, ``pACC`` (floats) and ``IoU``, ``ACC``:
        (K,) per-class arrays, NaN for the classes absent from the ground truth. All in percent;
        the means are NaN when no pixel is labeled.
    """
    conf_matrix = np.asarray(conf_matrix)
    if (
        conf_matrix.ndim != 2
        or conf_matrix.shape[0] != conf_matrix.shape[1]
        or len(conf_matrix) < 2
    ):
        raise ValueError(
            f"conf_matrix: expected a square (K+1, K+1) matrix with K >= 1, got {conf_matrix.shape}"
        )
    counts = conf_matrix[:-1, :-1].astype(np.float64)  # (K, K) without the ignore row and column
    tp = counts.diagonal()  # (K,)
    gt = counts.sum(axis=0)  # (K,) column sums: ground-truth pixels per class
    pred = counts.sum(axis=1)  # (K,) row sums: predicted pixels per class
    in_gt = gt > 0
    in_gt_or_pred = (gt + pred) > 0

    iou = np.full(len(tp), np.nan)
    acc = np.full(len(tp), np.nan)
    iou[in_gt] = tp[in_gt] / (gt[in_gt] + pred[in_gt] - tp[in_gt])
    acc[in_gt] = tp[in_gt] / gt[in_gt]
    with np.errstate(invalid="ignore", divide="ignore"):  # no labeled pixel: NaN means
        miou = iou[in_gt].sum() / in_gt.sum()
        miou_legacy = iou[in_gt].sum() / in_gt_or_pred.sum()
        fwiou = (iou[in_gt] * gt[in_gt]).sum() / gt.sum()
        macc = acc[in_gt].sum() / in_gt.sum()
        pacc = tp.sum() / gt.sum()
    return {
        "mIoU": 100 * float(miou),
        "mIoU_legacy": 100 * float(miou_legacy),
        "fwIoU": 100 * float(fwiou),
        "mACC": 100 * float(macc),
        "pACC": 100 * float(pacc),
        "IoU": 100 * iou,
        "ACC": 100 * acc,
    }


def predicted_labels(output: dict, file_name: str) -> np.ndarray:
    """The (H, W) int64 predicted class ids of one model output.

    Args:
        output: ``sem_seg_labels`` (H, W) class ids (preferred when present) or detectron2's
            ``sem_seg`` (K, H, W) class scores, whose argmax over K is taken.
        file_name: the image, named in errors.
    """
    if "sem_seg_labels" in output:
        labels = output["sem_seg_labels"]
    elif "sem_seg" in output:
        labels = output["sem_seg"].argmax(dim=0)  # (K, H, W) -> (H, W)
    else:
        raise KeyError(
            f"the model output for {file_name} has neither 'sem_seg_labels' nor 'sem_seg' (keys: "
            f"{sorted(output)}); set MODEL.MAFT_PLUS.TEST.SEMANTIC_ON for semantic evaluation"
        )
    if labels.ndim != 2:
        raise ValueError(
            f"the predicted labels for {file_name} have shape {tuple(labels.shape)}; "
            "expected (H, W)"
        )
    return np.asarray(labels.cpu(), dtype=np.int64)


def check_predicted_ids(
    pred: np.ndarray, *, num_classes: int, file_name: str, dataset: str
) -> None:
    """Raise a ValueError when the (H, W) predicted ids of ``file_name`` leave 0..K-1."""
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(
            f"the prediction for {file_name} holds class ids outside 0..{num_classes - 1}: the "
            f"model's vocabulary must be the {num_classes} classes of {dataset}"
        )


def read_ground_truth(
    label_file: str,
    *,
    image_file: str,
    shape: tuple[int, int],
    num_classes: int,
    ignore_label: int,
    loading_fn: Callable[..., np.ndarray] = load_image_into_numpy_array,
) -> np.ndarray:
    """The (H, W) int label map of ``image_file``, read from ``label_file`` with ``loading_fn``
    (called as detectron2's ``SemSegEvaluator`` calls it) and checked; ``ignore_label`` is kept.

    Args:
        shape: (H, W) of the prediction the label is scored against.

    Raises:
        SkippedRecordError: naming the label file when it cannot be scored: missing, unreadable,
            not of ``shape``, or holding ids outside 0..K-1 other than ``ignore_label``.
    """
    try:
        gt = loading_fn(label_file, dtype=int)
    except FileNotFoundError as exc:
        raise SkippedRecordError(f"label {label_file} of image {image_file} not found") from exc
    except IMAGE_READ_ERRORS as exc:
        raise SkippedRecordError(
            f"could not read the label {label_file} of image {image_file}: {exc}"
        ) from exc
    if gt.shape != tuple(shape):
        raise SkippedRecordError(
            f"label {label_file} has shape {gt.shape} but the prediction for its image "
            f"{image_file} is {tuple(shape)} (H, W)"
        )
    try:
        check_label_ids(gt, num_classes, ignore_label, label_file)
    except ValueError as exc:
        raise SkippedRecordError(str(exc)) from exc
    return gt


class OpenVocabSemSegEvaluator(SemSegEvaluator):
    """detectron2's ``SemSegEvaluator`` plus ``mIoU_legacy`` (see :func:`segmentation_metrics`) and
    the skipping of labels that cannot be scored.

    Model outputs hold ``sem_seg_labels`` (H, W) class ids or ``sem_seg`` (K, H, W) scores. A label
    that is missing or unreadable, whose shape is not the prediction's, or that holds ids outside
    0..K-1 other than the ignore label is not counted; :attr:`skipped` lists it with the reason.

    Everything else is detectron2's: reading the label files (png, or uint16 tif with ignore 65535:
    PIL reads those as 16-bit and they become an int array), accumulating the confusion matrix (and
    the boundary one), gathering it across processes, the predictions json written to
    ``output_dir``, and the ``mIoU`` (current definition), ``fwIoU``, ``mACC``, ``pACC``,
    ``IoU-<class>`` and ``ACC-<class>`` results. ``mIoU_legacy`` follows ``mIoU`` in the results; it
    is computed from the same gathered confusion matrix, which is also saved in ``output_dir`` as
    ``sem_seg_confusion.npy`` ((K+1, K+1) int64, the convention of the module docstring).
    """

    CONFUSION_FILE = "sem_seg_confusion.npy"

    def reset(self) -> None:
        super().reset()
        self._skipped: list[dict] = []
        self._num_scored = 0

    def state_dict(self) -> dict:
        """What :meth:`process` has accumulated, as tensors and lists (for a resumable
        evaluation, ``resume.py``); :meth:`load_state_dict` puts it back."""
        return {
            "conf_matrix": torch.from_numpy(self._conf_matrix.copy()),
            "b_conf_matrix": torch.from_numpy(self._b_conf_matrix.copy()),
            "predictions": list(self._predictions),
            "skipped": list(self._skipped),
            "num_scored": self._num_scored,
        }

    def load_state_dict(self, state: dict) -> None:
        conf_matrix = state["conf_matrix"].numpy()
        if conf_matrix.shape != self._conf_matrix.shape:
            raise ValueError(
                f"a saved confusion matrix of shape {conf_matrix.shape} does not fit "
                f"{self._dataset_name}'s {self._conf_matrix.shape}"
            )
        self._conf_matrix = conf_matrix.astype(self._conf_matrix.dtype)
        self._b_conf_matrix = state["b_conf_matrix"].numpy().astype(self._b_conf_matrix.dtype)
        self._predictions = list(state["predictions"])
        self._skipped = list(state["skipped"])
        self._num_scored = int(state["num_scored"])

    @property
    def skipped(self) -> list[dict]:
        """The images left out, ``{"file_name", "reason"}``: this process's until :meth:`evaluate`,
        every process's after it."""
        return list(self._skipped)

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Add each image's (prediction, ground truth) pixel pairs to the confusion matrix.

        Args:
            inputs: the model inputs; ``file_name`` finds the label file.
            outputs: the model outputs, with ``sem_seg_labels`` or ``sem_seg`` (see
                :func:`predicted_labels`).
        """
        for record, output in zip(inputs, outputs, strict=True):
            file_name = record["file_name"]
            pred = predicted_labels(output, file_name)  # (H, W)
            check_predicted_ids(
                pred, num_classes=self._num_classes, file_name=file_name, dataset=self._dataset_name
            )
            try:
                gt = self._ground_truth(file_name, pred.shape)  # (H, W)
            except SkippedRecordError as exc:
                logger.warning("%s: not counted in the semantic metrics: %s", file_name, exc)
                self._skipped.append(skip_record(file_name, str(exc)))
                continue
            self._conf_matrix += self._pair_counts(pred, gt)
            if self._compute_boundary_iou:
                boundary_gt = self._mask_to_boundary(gt.astype(np.uint8))
                boundary_pred = self._mask_to_boundary(pred.astype(np.uint8))
                self._b_conf_matrix += self._pair_counts(boundary_pred, boundary_gt)
            if self._output_dir:  # the json is only written there
                self._predictions.extend(self.encode_json_sem_seg(pred, file_name))
            self._num_scored += 1

    def _ground_truth(self, file_name: str, pred_hw: tuple[int, int]) -> np.ndarray:
        """The (H, W) int label of image ``file_name`` with the ignore label replaced by K.

        Raises:
            SkippedRecordError: naming the label file when it cannot be scored.
        """
        gt = read_ground_truth(
            self.input_file_to_gt_file[file_name],
            image_file=file_name,
            shape=pred_hw,
            num_classes=self._num_classes,
            ignore_label=self._ignore_label,
            loading_fn=self.sem_seg_loading_fn,
        )
        gt[gt == self._ignore_label] = self._num_classes
        return gt

    def _pair_counts(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """(K+1, K+1) counts of the (prediction, ground truth) pairs of two (H, W) id maps."""
        size = self._num_classes + 1
        pairs = size * pred.reshape(-1) + gt.reshape(-1)  # (H*W,) row-major index into (K+1, K+1)
        return np.bincount(pairs, minlength=size * size).reshape(size, size)

    def evaluate(self) -> OrderedDict | None:
        """detectron2's results under ``"sem_seg"`` with ``mIoU_legacy`` added; None off rank 0,
        and None on every process when no image could be scored (an error is logged)."""
        num_scored = self._num_scored
        if self._distributed:
            gathered = comm.all_gather((self._num_scored, self._skipped))
            num_scored = sum(n for n, _ in gathered)
            self._skipped = [s for _, skipped in gathered for s in skipped]
        if num_scored == 0:
            logger.error(
                "%s: no image could be scored for the semantic metrics (%d skipped); no mIoU",
                self._dataset_name,
                len(self._skipped),
            )
            return None
        results = super().evaluate()  # gathers self._conf_matrix onto the main process
        if results is None:  # not the main process
            return None
        metrics = segmentation_metrics(self._conf_matrix)
        res = results["sem_seg"]
        # Insert the legacy value right after mIoU (the later "mIoU" key keeps its first place).
        res = {"mIoU": res["mIoU"], "mIoU_legacy": metrics["mIoU_legacy"], **res}
        results["sem_seg"] = res
        if self._output_dir:  # detectron2 saved its results before the legacy value was added
            path = os.path.join(self._output_dir, "sem_seg_evaluation.pth")
            with PathManager.open(path, "wb") as f:
                torch.save(res, f)
            self._save_confusion(Path(self._output_dir) / self.CONFUSION_FILE)
        logger.info(
            "%s: mIoU %.2f (mean over classes in the ground truth), mIoU_legacy %.2f (detectron2 "
            "v0.6: divided by the classes in the ground truth or the prediction)",
            self._dataset_name,
            res["mIoU"],
            res["mIoU_legacy"],
        )
        return results

    def _save_confusion(self, path: Path) -> None:
        """Write the gathered (K+1, K+1) confusion matrix as a .npy file, whole or not at all."""

        def write(file_name: str) -> None:
            with open(file_name, "wb") as f:  # a file object: np.save would add ".npy" to a name
                np.save(f, self._conf_matrix)

        write_atomically(path, write)
