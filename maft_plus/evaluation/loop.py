"""Evaluate a model on several datasets, each with its own vocabulary (its metadata's classes).

Semantic datasets get mIoU (both definitions), fwIoU, mACC, pACC; panoptic datasets get PQ/SQ/RQ
when the model outputs panoptic results and mIoU on their semantic labels when it outputs semantic
ones.
"""

import logging
from collections.abc import Callable, Mapping, Sequence

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import (
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..data.vocabulary import read_vocabulary_file, vocabulary_from_metadata
from .sem_seg_evaluation import OpenVocabSemSegEvaluator

logger = logging.getLogger(__name__)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def set_dataset_vocabulary(
    model: torch.nn.Module, dataset_name: str, vocabulary_file: str | None = None
) -> None:
    """Give the model the classes of a registered dataset.

    Args:
        vocabulary_file: optional ``id:name,synonym,...`` file replacing the dataset's class names
            (e.g. a synonym-augmented list); it must list the same number of classes.
    """
    vocabulary = vocabulary_from_metadata(MetadataCatalog.get(dataset_name))
    names = [", ".join(synonyms) for synonyms in vocabulary.class_synonyms]
    if vocabulary_file is not None:
        replacement = read_vocabulary_file(vocabulary_file)
        if len(replacement) != len(names):
            raise ValueError(
                f"vocabulary file {vocabulary_file} lists {len(replacement)} classes but dataset "
                f"{dataset_name!r} has {len(names)}; its ids must follow the dataset's class ids"
            )
        names = replacement
    unwrap(model).set_vocabulary(names, vocabulary.is_thing)


def build_evaluator(
    dataset_name: str, *, semantic_on: bool, panoptic_on: bool, output_dir: str | None = None
) -> DatasetEvaluator:
    """The evaluator(s) for a dataset, by its metadata's evaluator_type and the model's outputs."""
    evaluator_type = MetadataCatalog.get(dataset_name).evaluator_type
    if evaluator_type == "sem_seg":
        return OpenVocabSemSegEvaluator(dataset_name, distributed=True, output_dir=output_dir)
    if evaluator_type == "coco_panoptic_seg":
        evaluators = []
        if panoptic_on:
            evaluators.append(COCOPanopticEvaluator(dataset_name, output_dir))
        if semantic_on:
            evaluators.append(
                OpenVocabSemSegEvaluator(dataset_name, distributed=True, output_dir=output_dir)
            )
        return DatasetEvaluators(evaluators)
    raise ValueError(f"no evaluator for {dataset_name!r} (evaluator_type {evaluator_type!r})")


def evaluate_datasets(
    cfg,
    model: torch.nn.Module,
    dataset_names: Sequence[str],
    *,
    vocabulary_files: Mapping[str, str] | None = None,
    on_result: Callable[[str, dict], None] | None = None,
) -> dict[str, dict]:
    """Evaluate ``model`` on each dataset with that dataset's vocabulary.

    The model's vocabulary is restored afterwards. ``vocabulary_files`` maps dataset names to
    replacement vocabulary files. ``on_result(name, result)`` is called as each dataset finishes,
    so that callers can save results before the next one starts.
    """
    net = unwrap(model)
    previous_vocabulary = net.vocabulary
    tests = cfg.MODEL.MAFT_PLUS.TEST
    results = {}
    try:
        for name in dataset_names:
            set_dataset_vocabulary(net, name, (vocabulary_files or {}).get(name))
            loader = build_detection_test_loader(cfg, name)
            evaluator = build_evaluator(
                name, semantic_on=tests.SEMANTIC_ON, panoptic_on=tests.PANOPTIC_ON
            )
            results[name] = inference_on_dataset(model, loader, evaluator)
            if comm.is_main_process():
                logger.info("evaluation results for %s:", name)
                print_csv_format(results[name])
                if on_result is not None:
                    on_result(name, results[name])
    finally:
        net.vocabulary = previous_vocabulary
    return results
