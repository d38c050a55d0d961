"""An evaluator that draws the first images of a dataset beside their prediction and ground truth.

It keeps, on each process, the first ``num_images`` scored images as (image, predicted label map,
ground truth) at a reduced size, gathers them onto the main process at :meth:`evaluate` and writes
``prediction_grid.png`` (:func:`maft_plus.evaluation.plots.write_prediction_grid`). Predictions and
labels are read as ``OpenVocabSemSegEvaluator`` reads them; an image whose label cannot be scored
is left out here too. It returns no metrics.

Shapes: H, W the image as read (= the prediction's size); h, w the kept size.
"""

import logging
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from PIL import Image

from ..data.skip_records import SkippedRecordError
from .plots import write_prediction_grid
from .sem_seg_evaluation import check_predicted_ids, predicted_labels, read_ground_truth

logger = logging.getLogger(__name__)

# The kept images' shorter side at most (a grid of 8 rows stays a few megapixels).
GRID_SHORT_SIDE = 256


class PredictionGridEvaluator(DatasetEvaluator):
    """Write ``output_dir/prediction_grid.png``: the first images, predictions and labels.

    The dataset is a semantic one (records with ``sem_seg_file_name``; metadata ``stuff_classes``
    and ``ignore_label``) and the model outputs ``sem_seg_labels`` or ``sem_seg``.
    """

    FILE_NAME = "prediction_grid.png"

    def __init__(
        self,
        dataset_name: str,
        *,
        output_dir: str | Path,
        num_images: int = 8,
        short_side: int = GRID_SHORT_SIDE,
    ) -> None:
        """
        Args:
            dataset_name: a registered semantic dataset.
            output_dir: where prediction_grid.png is written.
            num_images: how many images the grid shows, the first ones evaluated (by process
                rank, then order).
            short_side: the kept images' shorter side at most (bilinear for the image, nearest
                neighbour for the label maps).
        """
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images: expected a positive int, got {num_images!r}")
        if short_side < 1:
            raise ValueError(f"short_side: expected a positive int, got {short_side!r}")
        metadata = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._class_names = list(metadata.stuff_classes)
        self._ignore_label = metadata.ignore_label
        self._label_files = {
            record["file_name"]: record["sem_seg_file_name"]
            for record in DatasetCatalog.get(dataset_name)
            if "sem_seg_file_name" in record
        }
        self._path = Path(output_dir) / self.FILE_NAME
        self._num_images = num_images
        self._short_side = short_side
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def reset(self) -> None:
        self._samples = []

    def state_dict(self) -> dict:
        """The samples kept so far, as tensors (for a resumable evaluation, ``resume.py``)."""
        return {"samples": [tuple(torch.from_numpy(a) for a in s) for s in self._samples]}

    def load_state_dict(self, state: dict) -> None:
        self._samples = [tuple(t.numpy() for t in sample) for sample in state["samples"]]

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Keep (image, prediction, ground truth) of the inputs until ``num_images`` are kept.

        Args:
            inputs: the model inputs; ``file_name`` finds the image and its label file.
            outputs: the model outputs, with ``sem_seg_labels`` or ``sem_seg``.
        """
        for record, output in zip(inputs, outputs, strict=True):
            if len(self._samples) >= self._num_images:
                return
            file_name = record["file_name"]
            pred = predicted_labels(output, file_name)  # (H, W)
            check_predicted_ids(
                pred,
                num_classes=len(self._class_names),
                file_name=file_name,
                dataset=self._dataset_name,
            )
            if file_name not in self._label_files:
                logger.debug("%s: no label file, not in the prediction grid", file_name)
                continue
            try:
                gt = read_ground_truth(
                    self._label_files[file_name],
                    image_file=file_name,
                    shape=pred.shape,
                    num_classes=len(self._class_names),
                    ignore_label=self._ignore_label,
                )  # (H, W)
            except SkippedRecordError as exc:
                logger.debug("%s: not in the prediction grid: %s", file_name, exc)
                continue
            image = read_image(file_name, format="RGB")  # (H, W, 3) uint8, EXIF-upright
            if image.shape[:2] != pred.shape:
                logger.debug("%s: image %s, prediction %s", file_name, image.shape, pred.shape)
                continue
            self._samples.append(self._reduced(image, pred, gt))

    def _reduced(
        self, image: np.ndarray, pred: np.ndarray, gt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(h, w, 3) uint8, (h, w) int32, (h, w) int32 with a shorter side of at most short_side."""
        height, width = pred.shape
        scale = min(1.0, self._short_side / min(height, width))
        size = (max(round(width * scale), 1), max(round(height * scale), 1))  # PIL's (w, h)
        if size == (width, height):
            return image, pred.astype(np.int32), gt.astype(np.int32)
        small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
        maps = [
            np.asarray(Image.fromarray(m.astype(np.int32)).resize(size, Image.Resampling.NEAREST))
            for m in (pred, gt)
        ]  # 32-bit ("I") images, so every class id survives
        return np.asarray(small, dtype=np.uint8), maps[0], maps[1]

    def evaluate(self) -> dict:
        """Gather the kept samples onto the main process and write the grid; no metrics."""
        gathered = comm.gather(self._samples, dst=0)  # [] off the main process
        if not comm.is_main_process():
            return {}
        samples = list(chain.from_iterable(gathered))[: self._num_images]
        if not samples:
            logger.warning("%s: no image to draw; no %s", self._dataset_name, self._path)
            return {}
        write_prediction_grid(
            samples, self._class_names, self._path, ignore_label=self._ignore_label
        )
        logger.info("%s: %d images drawn in %s", self._dataset_name, len(samples), self._path)
        return {}
