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

Shapes: K classes.
"""

import logging
import os
from collections import OrderedDict

import numpy as np
import torch
from detectron2.evaluation import SemSegEvaluator
from detectron2.utils.file_io import PathManager

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


class OpenVocabSemSegEvaluator(SemSegEvaluator):
    """detectron2's ``SemSegEvaluator`` plus ``mIoU_legacy`` (see :func:`segmentation_metrics`).

    Everything else is detectron2's: reading the label files (png, or uint16 tif with ignore 65535:
    PIL reads those as 16-bit and they become an int array), accumulating the confusion matrix,
    gathering it across processes, and the ``mIoU`` (current definition), ``fwIoU``, ``mACC``,
    ``pACC``, ``IoU-<class>`` and ``ACC-<class>`` results. ``mIoU_legacy`` follows ``mIoU`` in the
    results; it is computed from the same gathered confusion matrix.
    """

    def evaluate(self) -> OrderedDict | None:
        """detectron2's results under ``"sem_seg"`` with ``mIoU_legacy`` added; None off rank 0."""
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
        logger.info(
            "%s: mIoU %.2f (mean over classes in the ground truth), mIoU_legacy %.2f (detectron2 "
            "v0.6: divided by the classes in the ground truth or the prediction)",
            self._dataset_name,
            res["mIoU"],
            res["mIoU_legacy"],
        )
        return results
