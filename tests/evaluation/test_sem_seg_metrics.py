"""Semantic metrics: both mIoU definitions, fwIoU, mACC and pACC on hand-made cases."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from PIL import Image

from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.semantic import register_sem_seg
from maft_plus.data.prepare import write_label_map
from maft_plus.evaluation import OpenVocabSemSegEvaluator, segmentation_metrics

# The hand-made case, K = 4 classes (rows = prediction, columns = ground truth, index 4 = ignore):
#   class 0: in the ground truth and predicted;
#   class 1: in the ground truth, never predicted;
#   class 2: predicted on labeled pixels, absent from the ground truth;
#   class 3: predicted only on ignored pixels, absent from the ground truth.
CONF = np.zeros((5, 5), dtype=np.int64)
CONF[0, 0] = 4  # class 0 pixels predicted 0
CONF[2, 0] = 2  # class 0 pixels predicted 2
CONF[0, 1] = 2  # class 1 pixels predicted 0
CONF[2, 1] = 2  # class 1 pixels predicted 2
CONF[3, 4] = 2  # ignored pixels predicted 3: count nowhere
# tp = [4, 0, 0, 0]; gt = column sums = [6, 4, 0, 0]; pred = row sums (no ignore) = [6, 0, 4, 0].
# IoU 0 = 4 / (6 + 6 - 4) = 0.5; IoU 1 = 0 / (4 + 0 - 0) = 0; classes 2, 3 absent from the GT: NaN.
# mIoU = (0.5 + 0) / 2 classes in the GT = 25%.
# mIoU_legacy = (0.5 + 0) / 3 classes in the GT or the prediction ({0, 1, 2}; class 3 only on
#   ignored pixels does not count) = 16.67%.
# fwIoU = 0.5 * 6/10 + 0 * 4/10 = 30%.  mACC = (4/6 + 0/4) / 2 = 33.33%.  pACC = 4 / 10 = 40%.
EXPECTED = {
    "mIoU": 25.0,
    "mIoU_legacy": 100 / 6,
    "fwIoU": 30.0,
    "mACC": 100 / 3,
    "pACC": 40.0,
}
EXPECTED_IOU = [50.0, 0.0, math.nan, math.nan]
EXPECTED_ACC = [100 * 4 / 6, 0.0, math.nan, math.nan]

# detectron2 warns through the deprecated Logger.warn that a 300-class dataset gets no boundary IoU.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def test_hand_made_confusion_matrix():
    metrics = segmentation_metrics(CONF)
    for key, value in EXPECTED.items():
        assert metrics[key] == pytest.approx(value), key
    np.testing.assert_allclose(metrics["IoU"], EXPECTED_IOU)
    np.testing.assert_allclose(metrics["ACC"], EXPECTED_ACC)


def test_definitions_agree_when_every_predicted_class_is_in_the_ground_truth():
    conf = CONF.copy()
    conf[1, 1] = 3  # class 1 now predicted once right
    conf[0, 2] = 1  # class 2 now in the ground truth
    metrics = segmentation_metrics(conf)
    assert metrics["mIoU_legacy"] == pytest.approx(metrics["mIoU"])
    # gt = [6, 7, 1, 0], pred = [7, 3, 4, 0]: IoU 0 = 4/(6 + 7 - 4), IoU 1 = 3/(7 + 3 - 3),
    # IoU 2 = 0/(1 + 4 - 0); the classes in GT or prediction are exactly those in the GT.
    assert metrics["mIoU"] == pytest.approx(100 * (4 / 9 + 3 / 7 + 0) / 3)


def test_rows_are_predictions_and_columns_ground_truth():
    conf = np.zeros((3, 3), dtype=np.int64)
    conf[1, 0] = 1  # one pixel of class 0 predicted as class 1
    metrics = segmentation_metrics(conf)
    np.testing.assert_allclose(metrics["IoU"], [0.0, math.nan])  # only class 0 is in the GT
    assert metrics["mIoU"] == 0.0 and metrics["pACC"] == 0.0
    np.testing.assert_allclose(segmentation_metrics(conf.T)["IoU"], [math.nan, 0.0])


@pytest.mark.parametrize("shape", [(4,), (3, 4), (1, 1)])
def test_bad_matrix_is_refused(shape):
    with pytest.raises(ValueError, match="conf_matrix"):
        segmentation_metrics(np.zeros(shape))


def test_no_labeled_pixel_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = segmentation_metrics(np.zeros((3, 3)))
    assert math.isnan(metrics["mIoU"]) and math.isnan(metrics["mIoU_legacy"])


# End to end: two 2x3 images whose pixels make exactly CONF (ground truth -1 = ignore, written as
# the dataset's ignore label).
GT = [np.array([[0, 0, 0], [0, 0, 0]]), np.array([[1, 1, 1], [1, -1, -1]])]
PRED = [np.array([[0, 0, 0], [0, 2, 2]]), np.array([[0, 0, 2], [2, 3, 3]])]


@pytest.fixture(
    params=[
        # (label format, ignore label, K, class id offset): png with the 4 classes as ids 0..3;
        # uint16 tif of a 300-class dataset whose ids 296..299 play classes 0..3 (ids > 255 need
        # 16 bits; the 296 other classes are absent from GT and prediction and count nowhere).
        ("png", 255, 4, 0),
        ("tif", 65535, 300, 296),
    ],
    ids=["png", "uint16-tif"],
)
def dataset(request, tmp_path: Path):
    label_ext, ignore, num_classes, offset = request.param
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    for i, gt in enumerate(GT):
        Image.new("RGB", (3, 2)).save(images / f"{i}.jpg")
        dtype = np.uint8 if label_ext == "png" else np.uint16
        write_label_map(
            np.where(gt < 0, ignore, gt + offset).astype(dtype), labels / f"{i}.{label_ext}"
        )
    name = f"test_sem_seg_metrics_{label_ext}"
    register_sem_seg(
        name,
        image_dir=images,
        label_dir=labels,
        class_names=[f"class {k}" for k in range(num_classes)],
        prepare_script="tests/evaluation/test_sem_seg_metrics.py",
        label_ext=label_ext,
        ignore_label=ignore,
    )
    yield name, num_classes, offset
    unregister([name])


def run_evaluator(name: str, num_classes: int, offset: int, output_dir: Path | None = None):
    evaluator = OpenVocabSemSegEvaluator(name, output_dir=str(output_dir) if output_dir else None)
    evaluator.reset()
    for record, pred in zip(DatasetCatalog.get(name), PRED, strict=True):
        scores = torch.nn.functional.one_hot(torch.as_tensor(pred) + offset, num_classes)
        scores = scores.permute(2, 0, 1).float()  # (H, W, K) -> (K, H, W)
        evaluator.process([{"file_name": record["file_name"]}], [{"sem_seg": scores}])
    return evaluator, evaluator.evaluate()["sem_seg"]


def test_evaluator_end_to_end(dataset):
    name, num_classes, offset = dataset
    evaluator, res = run_evaluator(name, num_classes, offset)
    expected_conf = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    ids = [*range(offset, offset + 4), num_classes]  # classes 0..3 and ignore
    expected_conf[np.ix_(ids, ids)] = CONF
    np.testing.assert_array_equal(evaluator._conf_matrix, expected_conf)  # ignore is ignored
    for key, value in EXPECTED.items():
        assert res[key] == pytest.approx(value), key
    for k in range(4):
        np.testing.assert_allclose(res[f"IoU-class {k + offset}"], EXPECTED_IOU[k])
    assert list(res)[:2] == ["mIoU", "mIoU_legacy"]


def test_pure_function_matches_detectron2_on_the_gathered_matrix(dataset):
    name, num_classes, offset = dataset
    evaluator, res = run_evaluator(name, num_classes, offset)
    metrics = segmentation_metrics(evaluator._conf_matrix)
    for key in ("mIoU", "mIoU_legacy", "fwIoU", "mACC", "pACC"):
        assert metrics[key] == pytest.approx(res[key]), key
    np.testing.assert_allclose(metrics["IoU"], [res[f"IoU-class {k}"] for k in range(num_classes)])
    np.testing.assert_allclose(metrics["ACC"], [res[f"ACC-class {k}"] for k in range(num_classes)])


def test_evaluator_saves_the_legacy_value(tmp_path, dataset):
    _, res = run_evaluator(*dataset, output_dir=tmp_path / "out")
    saved = torch.load(tmp_path / "out" / "sem_seg_evaluation.pth", weights_only=False)
    assert saved["mIoU_legacy"] == pytest.approx(EXPECTED["mIoU_legacy"])
    assert (tmp_path / "out" / "sem_seg_predictions.json").is_file()


def test_evaluator_saves_its_confusion_matrix(tmp_path, dataset):
    evaluator, _ = run_evaluator(*dataset, output_dir=tmp_path / "out")
    saved = np.load(tmp_path / "out" / OpenVocabSemSegEvaluator.CONFUSION_FILE)
    assert saved.dtype == np.int64 and saved.sum() == 12  # the 2 images' 2x3 pixels
    np.testing.assert_array_equal(saved, evaluator._conf_matrix)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp file
