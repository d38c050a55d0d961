"""The pictures of one evaluated dataset, from the files its evaluators left in its folder.

``evaluate_datasets(..., output_dir=OUT)`` leaves ``OUT/<dataset>/sem_seg_confusion.npy`` (and,
with ``grid_images``, ``prediction_grid.png``); :func:`write_dataset_plots` adds
``per_class_iou.png`` and ``confusion.png`` beside them. Both evaluation tools call it.
"""

import logging
from pathlib import Path

import numpy as np
from detectron2.data import MetadataCatalog

from .plots import plot_confusion, plot_per_class_iou
from .prediction_grid import PredictionGridEvaluator
from .sem_seg_evaluation import OpenVocabSemSegEvaluator

logger = logging.getLogger(__name__)


def write_dataset_plots(dataset_dir: Path, dataset_name: str, result: dict) -> list[Path]:
    """Draw one dataset's semantic results; return every picture in ``dataset_dir``.

    Args:
        dataset_dir: the dataset's evaluator folder (``OUT/<dataset>``).
        dataset_name: the registered name, whose metadata names the classes.
        result: its results, ``{"sem_seg": {"IoU-<class>": ..., ...}, ...}``.

    Returns:
        The paths of ``per_class_iou.png``, ``confusion.png`` and, if its evaluator wrote one,
        ``prediction_grid.png``; empty for a dataset without semantic results.

    Raises:
        ValueError: nothing to draw (e.g. no labelled pixel); the results themselves are unharmed.
    """
    semantic = result.get("sem_seg")
    if semantic is None:
        logger.warning("%s: no semantic results (no semantic output): no plots", dataset_name)
        return []
    per_class_iou = {
        key.removeprefix("IoU-"): value for key, value in semantic.items() if key.startswith("IoU-")
    }
    class_names = MetadataCatalog.get(dataset_name).stuff_classes
    conf_matrix = np.load(dataset_dir / OpenVocabSemSegEvaluator.CONFUSION_FILE)
    written = [
        plot_per_class_iou(per_class_iou, dataset_dir / "per_class_iou.png", title=dataset_name),
        plot_confusion(conf_matrix, class_names, dataset_dir / "confusion.png", title=dataset_name),
    ]
    grid = dataset_dir / PredictionGridEvaluator.FILE_NAME
    return written + ([grid] if grid.is_file() else [])
