"""PredictionGridEvaluator: which images it keeps, at what size, and the grid it writes; its
wiring into build_evaluators."""

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from PIL import Image

import maft_plus.evaluation.prediction_grid as prediction_grid
from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.semantic import register_sem_seg
from maft_plus.evaluation import OpenVocabSemSegEvaluator
from maft_plus.evaluation.loop import build_evaluators
from maft_plus.evaluation.prediction_grid import PredictionGridEvaluator
from maft_plus.visualization import class_color

NAME = "test_prediction_grid"
H, W = 300, 600  # a shorter side over 256: kept at 256 x 512
CLASSES = ["road", "car", "sky"]


def ground_truth(n: int) -> np.ndarray:
    """(H, W) label of image n: class n % 3 on the left, class 2 on the right, the top ignored."""
    label = np.full((H, W), 2, dtype=np.uint8)
    label[:, : W // 2] = n % 3
    label[:20] = 255
    return label


@pytest.fixture
def dataset(tmp_path: Path):
    """4 images; image 1's label is of the wrong size (it cannot be scored)."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for n in range(4):
        Image.new("RGB", (W, H), (40 * n, 100, 200)).save(images / f"{n}.jpg")
        label = ground_truth(n) if n != 1 else ground_truth(n)[:10, :10]
        Image.fromarray(label).save(labels / f"{n}.png")
    register_sem_seg(
        NAME,
        image_dir=images,
        label_dir=labels,
        class_names=CLASSES,
        prepare_script="tests/evaluation/test_prediction_grid.py",
    )
    yield sorted(DatasetCatalog.get(NAME), key=lambda r: r["file_name"])
    unregister([NAME])


def prediction(n: int) -> np.ndarray:
    """(H, W) predicted ids of image n: class (n + 1) % 3 on the top half, 0 below."""
    pred = np.zeros((H, W), dtype=np.int64)
    pred[: H // 2] = (n + 1) % 3
    return pred


def run(evaluator, records: list[dict]) -> None:
    evaluator.reset()
    for n, record in enumerate(records):
        labels = torch.as_tensor(prediction(n))
        evaluator.process([{"file_name": record["file_name"]}], [{"sem_seg_labels": labels}])
    assert evaluator.evaluate() == {}  # no metrics


def test_keeps_the_first_scorable_images_reduced(dataset, tmp_path, monkeypatch):
    drawn = []
    real = prediction_grid.write_prediction_grid

    def spy(samples, class_names, path, **kwargs):
        drawn.append((samples, class_names, kwargs))
        return real(samples, class_names, path, **kwargs)

    monkeypatch.setattr(prediction_grid, "write_prediction_grid", spy)
    out = tmp_path / "out"
    run(PredictionGridEvaluator(NAME, output_dir=out, num_images=2), dataset)

    ((samples, class_names, kwargs),) = drawn
    assert class_names == CLASSES and kwargs == {"ignore_label": 255}
    assert len(samples) == 2  # images 0 and 2: image 1's label cannot be scored
    for n, (image, pred, gt) in zip((0, 2), samples, strict=True):
        assert image.shape == (256, 512, 3) and image.dtype == np.uint8
        assert pred.shape == gt.shape == (256, 512)
        # Nearest neighbour: the ids stay ids, at the scaled positions.
        assert set(np.unique(gt)) == {n % 3, 2, 255} and set(np.unique(pred)) == {0, (n + 1) % 3}
        assert gt[0, 0] == 255 and gt[128, 10] == n % 3 and gt[128, 500] == 2
        assert pred[10, 10] == (n + 1) % 3 and pred[250, 10] == 0
        np.testing.assert_allclose(image[128, 256], (40 * n, 100, 200), atol=3)
    with Image.open(out / "prediction_grid.png") as grid:
        pixels = np.asarray(grid.convert("RGB"))
    colors = {tuple(c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}
    assert {class_color(k) for k in range(3)} <= colors


def test_small_images_are_kept_at_their_size(dataset, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(
        prediction_grid, "write_prediction_grid", lambda s, *a, **k: drawn.extend(s)
    )
    run(PredictionGridEvaluator(NAME, output_dir=tmp_path, num_images=8, short_side=400), dataset)
    assert len(drawn) == 3 and all(image.shape == (H, W, 3) for image, _, _ in drawn)
    np.testing.assert_array_equal(drawn[1][2], ground_truth(2))


def test_bad_arguments(dataset, tmp_path):
    with pytest.raises(ValueError, match="num_images: expected a positive int"):
        PredictionGridEvaluator(NAME, output_dir=tmp_path, num_images=0)
    evaluator = PredictionGridEvaluator(NAME, output_dir=tmp_path)
    wrong = {"sem_seg_labels": torch.full((H, W), 3)}
    with pytest.raises(ValueError, match=r"holds class ids outside 0..2"):
        evaluator.process([{"file_name": dataset[0]["file_name"]}], [wrong])


def test_build_evaluators_adds_the_grid_only_when_asked(dataset, tmp_path):
    plain = build_evaluators(NAME, semantic_on=True, panoptic_on=False)
    assert [type(e) for e in plain] == [OpenVocabSemSegEvaluator]
    with_grid = build_evaluators(
        NAME, semantic_on=True, panoptic_on=False, output_dir=str(tmp_path), grid_images=3
    )
    assert [type(e) for e in with_grid] == [OpenVocabSemSegEvaluator, PredictionGridEvaluator]
    with pytest.raises(ValueError, match="grid_images.*output_dir None"):
        build_evaluators(NAME, semantic_on=True, panoptic_on=False, grid_images=3)
