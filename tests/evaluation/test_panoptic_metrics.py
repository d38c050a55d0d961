"""Panoptic quality through detectron2's COCOPanopticEvaluator, hand-computed on one 10x10 image.

No evaluator of ours: this pins down what detectron2 + panopticapi report for our registration
(contiguous category ids with ``isthing``) so PQ/SQ/RQ for all / things / stuff can be trusted.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOPanopticEvaluator
from panopticapi.utils import id2rgb
from PIL import Image

from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.panoptic import register_panoptic

NAME = "test_panoptic_metrics"
# json ids 1..4 -> contiguous ids 0..3.
CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
    {"id": 2, "name": "car", "isthing": 1, "color": [0, 0, 142]},
    {"id": 3, "name": "sky", "isthing": 0, "color": [70, 130, 180]},
    {"id": 4, "name": "grass", "isthing": 0, "color": [0, 200, 0]},
]


def boxes_to_map(boxes: dict[int, tuple[slice, slice]]) -> np.ndarray:
    """(10, 10) id map, 0 = void, painted box by box in order."""
    ids = np.zeros((10, 10), dtype=np.int32)
    for segment_id, box in boxes.items():
        ids[box] = segment_id
    return ids


# Ground truth (rows, columns; 100 pixels):
#   11 person #1: rows 0-4, cols 0-4 (25 px)     12 person #2: rows 2-4, cols 5-9 (15 px)
#   31 sky: rows 5-9, all columns (50 px)        41 grass: rows 0-1, cols 5-7 (6 px)
#   void: rows 0-1, cols 8-9 (4 px)
GT_SEGMENTS = {  # id: (json category id, box)
    11: (1, np.s_[0:5, 0:5]),
    12: (1, np.s_[2:5, 5:10]),
    31: (3, np.s_[5:10, 0:10]),
    41: (4, np.s_[0:2, 5:8]),
}
# Prediction (contiguous category, isthing):
#   1 person: rows 0-4, cols 0-2 (15 px, inside person #1): IoU 15 / 25 = 0.6, a match
#   2 person: rows 2-4, cols 6-9 (12 px, inside person #2): IoU 12 / 15 = 0.8, a match
#   3 person: rows 5-6, cols 0-4 (10 px, on sky): a false positive person
#   4 car: rows 0-1, cols 8-9 (4 px, all void): more than half void, so neither TP nor FP
#   5 sky: rows 7-9 all columns + rows 5-6 cols 5-9 (40 px, inside sky): IoU 40 / 50 = 0.8
#   grass is not predicted: a false negative.
PRED_SEGMENTS = {  # id: (contiguous category, isthing, boxes)
    1: (0, True, [np.s_[0:5, 0:3]]),
    2: (0, True, [np.s_[2:5, 6:10]]),
    3: (0, True, [np.s_[5:7, 0:5]]),
    4: (1, True, [np.s_[0:2, 8:10]]),
    5: (2, False, [np.s_[7:10, 0:10], np.s_[5:7, 5:10]]),
}
# Per category (PQ = sum IoU / (TP + FP/2 + FN/2), SQ = mean IoU of the matches,
# RQ = TP / (TP + FP/2 + FN/2), so PQ = SQ * RQ):
#   person: TP 2 (IoU 0.6, 0.8), FP 1: SQ 0.7, RQ 2 / 2.5 = 0.8, PQ 1.4 / 2.5 = 0.56
#   car: nothing counted (its only segment lies on void): left out of every average
#   sky: TP 1 (IoU 0.8): SQ 0.8, RQ 1, PQ 0.8
#   grass: FN 1: SQ 0, RQ 0, PQ 0
# Averages over the counted categories (panopticapi averages per-category values):
#   things (person): PQ 56, SQ 70, RQ 80
#   stuff (sky, grass): PQ 40, SQ 40, RQ 50
#   all (person, sky, grass): PQ 136 / 3, SQ 150 / 3 = 50, RQ 180 / 3 = 60
EXPECTED = {
    "PQ": 136 / 3,
    "SQ": 50.0,
    "RQ": 60.0,
    "PQ_th": 56.0,
    "SQ_th": 70.0,
    "RQ_th": 80.0,
    "PQ_st": 40.0,
    "SQ_st": 40.0,
    "RQ_st": 50.0,
}


@pytest.fixture
def dataset(tmp_path: Path):
    images, panoptic, semantic = tmp_path / "images", tmp_path / "panoptic", tmp_path / "semantic"
    for folder in (images, panoptic, semantic):
        folder.mkdir()
    Image.new("RGB", (10, 10)).save(images / "0.jpg")
    gt_ids = boxes_to_map({i: box for i, (_, box) in GT_SEGMENTS.items()})
    Image.fromarray(id2rgb(gt_ids)).save(panoptic / "0.png")
    segments_info = []
    for segment_id, (category_id, box) in GT_SEGMENTS.items():
        rows, cols = box
        area = int((gt_ids == segment_id).sum())
        bbox = [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start]
        segments_info.append(
            {"id": segment_id, "category_id": category_id, "iscrowd": 0, "bbox": bbox, "area": area}
        )
    gt_json = {
        "images": [{"id": 0, "file_name": "0.jpg", "height": 10, "width": 10}],
        "annotations": [{"image_id": 0, "file_name": "0.png", "segments_info": segments_info}],
        "categories": CATEGORIES,
    }
    (tmp_path / "panoptic.json").write_text(json.dumps(gt_json))
    register_panoptic(
        NAME,
        image_dir=images,
        panoptic_dir=panoptic,
        panoptic_json=tmp_path / "panoptic.json",
        semantic_dir=semantic,
        categories=CATEGORIES,
        prepare_script="tests/evaluation/test_panoptic_metrics.py",
    )
    yield NAME
    unregister([NAME])


def test_ground_truth_areas_are_as_drawn():
    gt_ids = boxes_to_map({i: box for i, (_, box) in GT_SEGMENTS.items()})
    areas = {i: int((gt_ids == i).sum()) for i in (0, 11, 12, 31, 41)}
    assert areas == {0: 4, 11: 25, 12: 15, 31: 50, 41: 6}


def test_pq_sq_rq_match_the_hand_computation(dataset):
    pred_ids = np.zeros((10, 10), dtype=np.int32)  # (H, W), 0 = void
    segments_info = []
    for segment_id, (category, isthing, boxes) in PRED_SEGMENTS.items():
        for box in boxes:
            pred_ids[box] = segment_id
        segments_info.append({"id": segment_id, "category_id": category, "isthing": isthing})
    assert np.bincount(pred_ids.ravel()).tolist() == [19, 15, 12, 10, 4, 40]

    evaluator = COCOPanopticEvaluator(dataset)
    evaluator.reset()
    (record,) = DatasetCatalog.get(dataset)
    inputs = [{"file_name": record["file_name"], "image_id": record["image_id"]}]
    evaluator.process(inputs, [{"panoptic_seg": (torch.from_numpy(pred_ids), segments_info)}])
    results = evaluator.evaluate()["panoptic_seg"]
    assert results == pytest.approx(EXPECTED)
    assert results["PQ_th"] == pytest.approx(results["SQ_th"] * results["RQ_th"] / 100)
