"""Evaluate a model on several datasets, each with its own vocabulary (its metadata's classes).

Semantic datasets get mIoU (both definitions), fwIoU, mACC, pACC; panoptic datasets get PQ/SQ/RQ
when the model outputs panoptic results and mIoU on their semantic labels when it outputs semantic
ones.

A bad image or label (missing, corrupt, truncated, not an image, of the wrong size, with class ids
outside the vocabulary) does not stop the evaluation: :class:`EvaluationMapper` or the semantic
evaluator skips it, the good images are evaluated as if it were not in the dataset, and the skipped
files are logged in one summary per dataset, passed to ``on_skipped`` and written to
``skipped_report``.

On request (``output_dir``, ``grid_images``) each dataset's evaluators also write their files
(``sem_seg_confusion.npy``, ``prediction_grid.png``, ...) to ``output_dir/<dataset name>``.
"""

import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from detectron2.data import (
    MetadataCatalog,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    print_csv_format,
)
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds
from torch.nn.parallel import DistributedDataParallel

from ..data.dataset_mappers import EvaluationMapper
from ..data.skip_records import (
    is_skip_record,
    num_skipped_images,
    skipped_summary,
    write_skipped_report,
)
from ..data.vocabulary.datasets import dataset_vocabulary
from .gather import all_gather_list
from .panoptic_evaluation import PanopticSubsetEvaluator
from .prediction_grid import PredictionGridEvaluator
from .resume import (
    DatasetProgress,
    ResumedInferenceSampler,
    config_digest,
    fingerprint,
    weights_digest,
)
from .sem_seg_evaluation import OpenVocabSemSegEvaluator

logger = logging.getLogger(__name__)


class NothingEvaluatedError(RuntimeError):
    """No image of a dataset could be evaluated: every one of them was skipped."""


SKIPPED_REPORT = "skipped_files.json"  # the usual name of the ``skipped_report`` file
RESUME_FOLDER = "resume"  # the usual name of the ``resume_dir`` folder, in the output folder


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def build_evaluators(
    dataset_name: str,
    *,
    semantic_on: bool,
    panoptic_on: bool,
    output_dir: str | None = None,
    grid_images: int = 0,
) -> list[DatasetEvaluator]:
    """The evaluators for a dataset, by its metadata's evaluator_type and the model's outputs.

    With ``grid_images`` > 0 (it needs ``output_dir``), a dataset evaluated for semantic metrics
    also gets a :class:`PredictionGridEvaluator` drawing its first ``grid_images`` images.
    """
    if grid_images < 0 or (grid_images and output_dir is None):
        raise ValueError(
            f"grid_images: expected 0, or a positive count with an output_dir; got {grid_images} "
            f"with output_dir {output_dir!r}"
        )

    def semantic_evaluators() -> list[DatasetEvaluator]:
        evaluators = [
            OpenVocabSemSegEvaluator(dataset_name, distributed=True, output_dir=output_dir)
        ]
        if grid_images:
            evaluators.append(
                PredictionGridEvaluator(dataset_name, output_dir=output_dir, num_images=grid_images)
            )
        return evaluators

    metadata = MetadataCatalog.get(dataset_name)
    evaluator_type = metadata.evaluator_type
    if evaluator_type == "sem_seg":
        return semantic_evaluators()
    if evaluator_type == "coco_panoptic_seg":
        evaluators = []
        if panoptic_on:
            evaluators.append(PanopticSubsetEvaluator(dataset_name, output_dir))
        if semantic_on and metadata.get("sem_seg_root") is not None:  # has semantic maps
            evaluators.extend(semantic_evaluators())
        return evaluators
    raise ValueError(f"no evaluator for {dataset_name!r} (evaluator_type {evaluator_type!r})")


def build_evaluator(
    dataset_name: str, *, semantic_on: bool, panoptic_on: bool, output_dir: str | None = None
) -> DatasetEvaluator:
    """:func:`build_evaluators` as one evaluator (the only one, or all of them combined)."""
    evaluators = build_evaluators(
        dataset_name, semantic_on=semantic_on, panoptic_on=panoptic_on, output_dir=output_dir
    )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


def run_evaluation(
    model: torch.nn.Module,
    data_loader,
    evaluators: Sequence[DatasetEvaluator],
    dataset_name: str,
    progress: DatasetProgress | None = None,
) -> tuple[dict | None, list[dict], int]:
    """Run ``model`` over ``data_loader`` (of :class:`EvaluationMapper` outputs) and evaluate.

    The model runs in eval mode without gradients, on the batches' good records only; the records
    the mapper skipped and the images an evaluator skipped are collected from every process.
    With ``progress`` (``resume.py``), the evaluators start from its loaded point (the loader then
    holds only the rest of this process's shard) and their state is saved as the loop goes.

    Returns:
        results: the evaluators' results (``{"sem_seg": {...}, "panoptic_seg": {...}}``), ``{}``
            off the main process; None on every process when no image could be evaluated.
        skipped: every process's skipped files (``{"file_name", "reason"}``), on every process.
        num_images: the dataset's image count, over all processes.
    """
    evaluator = DatasetEvaluators(list(evaluators))
    evaluator.reset()
    skipped, num_evaluated = [], 0
    if progress is not None:
        progress.restore(list(evaluators))
        skipped, num_evaluated = list(progress.point.skipped), progress.point.num_evaluated
    total = len(data_loader)
    logger.info("%s: inference on %d batches", dataset_name, total)
    model_seconds = 0.0  # the model's own forward time, to show what the rest of the loop adds
    evaluated_before = num_evaluated  # restored from a saved state: not timed here
    start = time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        for idx, batch in enumerate(data_loader):
            skipped += [r for r in batch if is_skip_record(r)]
            inputs = [r for r in batch if not is_skip_record(r)]
            if inputs:
                tick = time.perf_counter()
                outputs = model(inputs)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()  # the forward's own time, not its launch
                model_seconds += time.perf_counter() - tick
                evaluator.process(inputs, outputs)
                num_evaluated += len(inputs)
            if progress is not None:
                progress.advance(len(batch), list(evaluators), skipped, num_evaluated)
            seconds = time.perf_counter() - start
            eta = datetime.timedelta(seconds=int(seconds / (idx + 1) * (total - idx - 1)))
            log_every_n_seconds(
                logging.INFO,
                f"{dataset_name}: inference done {idx + 1}/{total}, "
                f"{seconds / (idx + 1):.4f} s/batch, ETA={eta}",
                n=5,
            )
    seconds = time.perf_counter() - start
    logger.info(
        "%s: inference on %d images (%d skipped) took %s (%.4f s per batch per device, %d devices)",
        dataset_name,
        num_evaluated,
        len(skipped),
        datetime.timedelta(seconds=int(seconds)),
        seconds / max(total, 1),
        comm.get_world_size(),
    )
    counts = comm.all_gather((num_evaluated, len(skipped)))
    num_images = sum(evaluated + skips for evaluated, skips in counts)
    skipped = all_gather_list(skipped)
    if sum(evaluated for evaluated, _ in counts) == 0:
        return None, skipped, num_images
    results = evaluator.evaluate() or {}  # None off the main process
    seconds = time.perf_counter() - start
    _log_throughput(dataset_name, seconds, model_seconds, num_evaluated - evaluated_before)
    for each in evaluators:
        if isinstance(each, OpenVocabSemSegEvaluator):
            skipped += each.skipped  # every process's, after evaluate()
    if num_skipped_images(skipped) == num_images:
        return None, skipped, num_images
    return results, skipped, num_images


def _log_throughput(dataset_name: str, seconds: float, model_seconds: float, images: int) -> None:
    """This process's images per second end to end (loading, the model, metrics) and the share
    of the time outside the model's forward: what data loading, resizing and metrics add."""
    if images == 0 or seconds <= 0:
        return
    logger.info(
        "%s: %.2f images/s end to end; the model's forward took %.1f of %.1f s, so loading, "
        "resizing and metrics add %.0f%% to it",
        dataset_name,
        images / seconds,
        model_seconds,
        seconds,
        100 * (seconds - model_seconds) / max(model_seconds, 1e-9),
    )


def evaluate_datasets(
    cfg,
    model: torch.nn.Module,
    dataset_names: Sequence[str],
    *,
    vocabulary_files: Mapping[str, str] | None = None,
    rename_classes: bool = False,
    on_result: Callable[[str, dict], None] | None = None,
    on_skipped: Callable[[str, list[dict]], None] | None = None,
    skipped_report: str | Path | None = None,
    strict: bool = True,
    output_dir: str | Path | None = None,
    grid_images: int = 0,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    save_every: int = 50,
) -> dict[str, dict]:
    """Evaluate ``model`` on each dataset with that dataset's vocabulary.

    The model's vocabulary is restored afterwards. ``vocabulary_files`` maps dataset names to
    replacement vocabulary files (``rename_classes``: see ``dataset_vocabulary``'s ``rename``).
    On the main process, as each dataset finishes (so that callers can save results before the
    next one starts):

    - ``on_result(name, result)`` gets its results (detectron2's ``{"sem_seg": {...}}`` format);
    - ``on_skipped(name, skipped)`` gets the files left out, ``[{"file_name", "reason"}, ...]``
      (empty when none), also logged as one warning naming every file;
    - ``skipped_report``, when given, is (re)written as JSON ``{dataset name: skipped, ...}``.

    With ``output_dir``, the evaluators of each dataset write their files to
    ``output_dir/<dataset name>`` (detectron2's predictions json, ``sem_seg_evaluation.pth``,
    ``sem_seg_confusion.npy``, ...); with ``grid_images`` > 0 as well, the semantic datasets get
    ``prediction_grid.png`` of their first ``grid_images`` images (see :func:`build_evaluators`).
    Without them (train_net.py) nothing is written but ``skipped_report``.

    With ``resume_dir``, each dataset's progress is saved under ``resume_dir/<dataset name>``
    every ``save_every`` images per process, and its results when it is finished (``resume.py``).
    ``resume`` reads finished datasets back and continues unfinished ones from their saved
    point; without it, earlier state there is discarded and every dataset starts over. A saved
    state of another checkpoint, config, vocabulary or process count raises
    :class:`~maft_plus.evaluation.resume.ResumeMismatchError`.

    Returns:
        dataset name -> results, of the datasets with at least one image evaluated.

    Raises:
        NothingEvaluatedError: after all datasets, naming those whose every image was skipped;
            with ``strict=False`` (evaluation during training, which must not end the run) the
            message is logged as an error instead.
    """
    net = unwrap(model)
    previous_vocabulary = net.vocabulary
    tests = cfg.MODEL.MAFT_PLUS.TEST
    mapper = EvaluationMapper(cfg)
    results, skipped_by_dataset, failed = {}, {}, []
    digests = None  # (weights, config) sha256, computed once when resume_dir is given
    try:
        for name in dataset_names:
            vocabulary, used = dataset_vocabulary(
                name,
                (vocabulary_files or {}).get(name),
                class_names=cfg.MODEL.MAFT_PLUS.CLASS_NAMES,
                rename=rename_classes,
            )
            net.set_vocabulary(vocabulary)
            logger.info("%s: %d classes, vocabulary %s", name, net.vocabulary.num_classes, used)
            evaluators = build_evaluators(
                name,
                semantic_on=tests.SEMANTIC_ON,
                panoptic_on=tests.PANOPTIC_ON,
                output_dir=None if output_dir is None else str(Path(output_dir) / name),
                grid_images=grid_images,
            )
            dicts = get_detection_dataset_dicts([name], filter_empty=False)
            progress = None
            if resume_dir is not None:
                digests = digests or (weights_digest(net), config_digest(cfg))
                expected = fingerprint(
                    weights=digests[0],
                    config=digests[1],
                    vocabulary=net.vocabulary,
                    dataset=name,
                    num_images=len(dicts),
                )
                progress = DatasetProgress(Path(resume_dir) / name, expected, save_every=save_every)
            result, skipped, num_images = _evaluate_dataset(
                cfg, model, dicts, mapper, evaluators, name, progress, resume=resume
            )
            if result is None:
                failed.append(f"{name} ({num_images} images)")
            else:
                results[name] = result
            if not comm.is_main_process():
                continue
            skipped_by_dataset[name] = skipped
            if skipped:
                logger.warning(skipped_summary(name, skipped, num_images))
            if skipped_report is not None:
                write_skipped_report(skipped_report, skipped_by_dataset)
            if on_skipped is not None:
                on_skipped(name, skipped)
            if result is None:
                logger.error("%s: every image was skipped; no metrics", name)
                continue
            logger.info("evaluation results for %s:", name)
            print_csv_format(result)
            if on_result is not None:
                on_result(name, result)
    finally:
        net.vocabulary = previous_vocabulary
    if failed:
        message = (
            f"no image of {', '.join(failed)} could be evaluated: every one was skipped (the "
            "reasons are logged above"
            + (f" and listed in {skipped_report})" if skipped_report is not None else ")")
        )
        if strict:
            raise NothingEvaluatedError(message)
        logger.error(message)
    return results


def _evaluate_dataset(
    cfg,
    model: torch.nn.Module,
    dicts: list[dict],
    mapper: EvaluationMapper,
    evaluators: list[DatasetEvaluator],
    name: str,
    progress: DatasetProgress | None,
    *,
    resume: bool,
) -> tuple[dict | None, list[dict], int]:
    """One dataset's (results, skipped, number of images): read back when finished before,
    else computed, from the saved point when resuming (see :func:`run_evaluation`)."""
    start = 0
    if progress is not None and resume:
        finished = progress.finished()
        if finished is not None:
            logger.info("%s: finished before, results read from %s", name, progress.folder)
            return finished["results"], finished["skipped"], finished["num_images"]
        start = progress.load().images_done
    elif progress is not None:
        progress.clear()
    loader = build_detection_test_loader(
        dicts,
        mapper=mapper,
        sampler=ResumedInferenceSampler(len(dicts), start),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    result, skipped, num_images = run_evaluation(model, loader, evaluators, name, progress)
    if progress is not None:
        progress.finish(result, skipped, num_images)
    return result, skipped, num_images
