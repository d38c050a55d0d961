"""OpenVocabSemSegEvaluator.process: both output forms, and labels that cannot be scored."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maft_plus.data.datasets import unregister
from maft_plus.evaluation import OpenVocabSemSegEvaluator

K = 4
IGNORE = 255
H, W = 6, 8
NAME = "test_sem_seg_skips"
GOOD = ["good0", "good1", "good2"]
# bad label -> expected reason (a fragment naming what was wrong)
BAD = {
    "bad_ids": "holds class ids [4, 9] outside 0..3 (ignore label 255)",
    "wrong_size": "has shape (6, 5) but the prediction for its image /images/wrong_size.jpg is",
    "missing": "not found",
    "truncated": "could not read the label",
}


def random_labels(rng: np.random.Generator, shape=(H, W)) -> np.ndarray:
    labels = rng.integers(0, K, shape).astype(np.uint8)
    labels[0, :3] = IGNORE
    return labels


@pytest.fixture
def dataset(tmp_path: Path):
    """Records whose images are never read: only their labels are (written under tmp_path)."""
    rng = np.random.default_rng(0)
    records = []
    for stem in [*GOOD, *BAD]:
        label = tmp_path / f"{stem}.png"
        if stem == "bad_ids":
            values = random_labels(rng)
            values[1, 1], values[2, 2] = K, 9  # ids the K classes do not have
            Image.fromarray(values).save(label)
        elif stem == "wrong_size":
            Image.fromarray(random_labels(rng, (H, W - 3))).save(label)
        elif stem == "truncated":
            Image.fromarray(random_labels(rng)).save(label)
            label.write_bytes(label.read_bytes()[:40])
        elif stem != "missing":
            Image.fromarray(random_labels(rng)).save(label)
        records.append({"file_name": f"/images/{stem}.jpg", "sem_seg_file_name": str(label)})
    DatasetCatalog.register(NAME, lambda: records)
    MetadataCatalog.get(NAME).set(
        stuff_classes=[f"class {k}" for k in range(K)],
        ignore_label=IGNORE,
        evaluator_type="sem_seg",
    )
    yield records
    unregister([NAME])


def predictions(seed: int) -> list[torch.Tensor]:
    """(K, H, W) random scores for each of the records."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(K, H, W, generator=generator) for _ in [*GOOD, *BAD]]


def evaluate(records: list[dict], scores: list[torch.Tensor], form: str):
    evaluator = OpenVocabSemSegEvaluator(NAME, distributed=False)
    evaluator.reset()
    for record, score in zip(records, scores, strict=True):
        if form == "sem_seg_labels":
            output = {"sem_seg_labels": score.argmax(dim=0)}  # (H, W) int64
        elif form == "both":  # the labels win: the scores here disagree with them
            output = {"sem_seg_labels": score.argmax(dim=0), "sem_seg": -score}
        else:
            output = {"sem_seg": score}
        evaluator.process([{"file_name": record["file_name"]}], [output])
    return evaluator, evaluator.evaluate()


@pytest.mark.parametrize("form", ["sem_seg_labels", "both"])
def test_label_maps_and_scores_give_the_same_confusion_matrix(dataset, form):
    good = dataset[: len(GOOD)]
    by_scores, scores_results = evaluate(good, predictions(1)[: len(GOOD)], "sem_seg")
    by_labels, labels_results = evaluate(good, predictions(1)[: len(GOOD)], form)
    assert by_scores._conf_matrix.sum() == len(GOOD) * H * W  # every pixel, ignored ones too
    np.testing.assert_array_equal(by_labels._conf_matrix, by_scores._conf_matrix)
    np.testing.assert_array_equal(by_labels._b_conf_matrix, by_scores._b_conf_matrix)
    np.testing.assert_equal(labels_results, scores_results)


def test_bad_labels_are_skipped_and_reported(dataset, caplog):
    scores = predictions(2)
    logger = logging.getLogger("maft_plus.evaluation.sem_seg_evaluation")
    logger.addHandler(caplog.handler)
    try:
        evaluator, results = evaluate(dataset, scores, "sem_seg")
    finally:
        logger.removeHandler(caplog.handler)
    good_only, good_results = evaluate(dataset[: len(GOOD)], scores[: len(GOOD)], "sem_seg")
    np.testing.assert_array_equal(evaluator._conf_matrix, good_only._conf_matrix)
    np.testing.assert_equal(results, good_results)
    reasons = {Path(s["file_name"]).stem: s["reason"] for s in evaluator.skipped}
    assert set(reasons) == set(BAD)
    for stem, reason in reasons.items():
        assert f"{stem}.png" in reason and BAD[stem] in reason, reason
    assert any("bad_ids.png" in r.getMessage() for r in caplog.records)


def test_nothing_scored_gives_no_results_instead_of_nan(dataset):
    evaluator, results = evaluate(dataset[len(GOOD) :], predictions(4)[len(GOOD) :], "sem_seg")
    assert results is None and len(evaluator.skipped) == len(BAD)


def test_an_output_without_semantic_prediction_is_an_error(dataset):
    evaluator = OpenVocabSemSegEvaluator(NAME, distributed=False)
    evaluator.reset()
    with pytest.raises(KeyError, match=r"good0.jpg has neither 'sem_seg_labels' nor 'sem_seg'"):
        evaluator.process([{"file_name": dataset[0]["file_name"]}], [{"panoptic_seg": None}])


def test_predicted_ids_outside_the_vocabulary_are_an_error(dataset):
    evaluator = OpenVocabSemSegEvaluator(NAME, distributed=False)
    evaluator.reset()
    labels = torch.full((H, W), K, dtype=torch.int64)
    with pytest.raises(ValueError, match="good0.jpg holds class ids outside 0..3"):
        evaluator.process([{"file_name": dataset[0]["file_name"]}], [{"sem_seg_labels": labels}])
