"""tools/evaluate_folder.py and DATASETS.FOLDERS: your own folder, evaluated and trained on."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from script_loader import load_script

from maft_plus.checkpoint import MAFTPlusCheckpointer
from maft_plus.config import setup_cfg
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.modeling import MAFTPlus

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/tiny/maftp_tiny.yaml")
NUM_CLASSES = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A synthetic dataset, the same val split copied as a user's folder, and tiny weights."""
    tmp = tmp_path_factory.mktemp("folder_eval")
    root = tmp / "datasets"
    synthetic = write_synthetic_dataset(
        root / SYNTHETIC_FOLDER, num_train=4, num_val=3, image_size=64
    )
    paths = synthetic.paths("val")
    folder = tmp / "my_data"
    shutil.copytree(paths.images, folder / "images")
    shutil.copytree(paths.sem_seg, folder / "labels")
    shutil.copy(synthetic.vocabulary_file, folder / "classes.txt")
    shutil.copytree(paths.panoptic, folder / "panoptic")
    shutil.copy(paths.panoptic_json, folder / "panoptic.json")
    torch.manual_seed(0)
    model = MAFTPlus(setup_cfg(TINY))
    MAFTPlusCheckpointer(model, save_dir=str(tmp)).save("tiny")
    return {"root": root, "folder": folder, "weights": str(tmp / "tiny.pth"), "tmp": tmp}


def folder_args(setup, output: Path, *extra: str) -> list[str]:
    folder = setup["folder"]
    return [
        *("--config-file", TINY, "--output-dir", str(output)),
        *("--images", str(folder / "images"), "--labels", str(folder / "labels")),
        *("--classes", str(folder / "classes.txt"), *extra),
        *("MODEL.WEIGHTS", setup["weights"]),
    ]


def test_a_folder_scores_as_the_registered_dataset_of_the_same_files(setup, monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(setup["root"]))
    registered = load_script("tools/evaluate_benchmarks.py").main(
        [
            *("--config-file", TINY, "--datasets", "maftp_synthetic_sem_seg_val"),
            *("--output-dir", str(tmp_path / "bench"), "MODEL.WEIGHTS", setup["weights"]),
        ]
    )["maftp_synthetic_sem_seg_val"]["sem_seg"]
    output = tmp_path / "folder"
    result = load_script("tools/evaluate_folder.py").main(folder_args(setup, output))["sem_seg"]
    for metric in ("mIoU", "mIoU_legacy", "fwIoU", "mACC", "pACC"):
        assert result[metric] == registered[metric], metric
    per_class = lambda r: [v for k, v in r.items() if k.startswith("IoU-")]  # noqa: E731
    np.testing.assert_array_equal(per_class(result), per_class(registered))

    assert json.loads((output / "results.json").read_text())["sem_seg"]["mIoU"] == result["mIoU"]
    with (output / "per_class_iou.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows][:2] == ["circle", "square"] and len(rows) == NUM_CLASSES
    table_iou = [float(r["IoU"]) if r["IoU"] else np.nan for r in rows]
    np.testing.assert_allclose(table_iou, per_class(result), atol=0.005)
    with (output / "confusion_matrix.csv").open() as f:
        matrix = list(csv.reader(f))
    assert matrix[0][1:] == [r["class"] for r in rows] + ["ignore"]
    counts = np.array([[int(v) for v in row[1:]] for row in matrix[1:]])
    assert counts.shape == (NUM_CLASSES + 1, NUM_CLASSES + 1)
    labels = [np.array(Image.open(p)) for p in sorted((setup["folder"] / "labels").iterdir())]
    assert counts.sum() == sum(label.size for label in labels)  # every pixel, once
    gt_pixels = [int(r["ground_truth_pixels"]) for r in rows]
    assert gt_pixels == [sum(int((label == k).sum()) for label in labels) for k in range(7)]


def test_plots_are_written_for_a_folder(setup, tmp_path):
    output = tmp_path / "plots"
    load_script("tools/evaluate_folder.py").main(
        folder_args(setup, output, "--plots", "--grid-images", "2")
    )
    for name in ("per_class_iou.png", "confusion.png", "prediction_grid.png"):
        with Image.open(output / "folder" / name) as picture:
            assert picture.width > 100 and picture.height > 100, name


def test_bad_files_are_listed_before_anything_runs(setup, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(setup["folder"], folder)
    labels = sorted((folder / "labels").iterdir())
    Image.fromarray(np.full((64, 64), 12, np.uint8)).save(labels[0])
    (folder / "images" / "extra.jpg").write_bytes((folder / "images" / "00000.jpg").read_bytes())
    tool = load_script("tools/evaluate_folder.py")
    args = [
        *("--config-file", TINY, "--output-dir", str(tmp_path / "out")),
        *("--images", str(folder / "images"), "--labels", str(folder / "labels")),
        *("--classes", str(folder / "classes.txt")),
    ]
    with pytest.raises(SystemExit, match="image.* without a label.*extra.png"):
        tool.main(args)
    (folder / "images" / "extra.jpg").unlink()
    with pytest.raises(SystemExit, match=f"label {labels[0]} holds ids \\[12\\] outside"):
        tool.main(args)
    assert not (tmp_path / "out").exists()


def train_on_folder(spec: str, name: str, tmp_path: Path, *opts: str) -> str:
    """Train the tiny model for 2 iterations on the folder dataset ``spec`` (named ``name``),
    registered by DATASETS.FOLDERS on the command line; return the log."""
    output = tmp_path / "run"
    process = subprocess.run(
        [
            *(sys.executable, "train_net.py"),
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny_train.yaml")),
            *("DATASETS.FOLDERS", f"['{spec}']", "DATASETS.TRAIN", f"('{name}',)"),
            *("SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(output)),
            *opts,
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "DETECTRON2_DATASETS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = process.stdout + process.stderr
    assert process.returncode == 0, log[-3000:]
    assert torch.load(output / "model_final.pth", weights_only=True)["iteration"] == 1
    return log


def test_train_net_fine_tunes_on_a_folder_named_in_the_config(setup, tmp_path):
    folder = setup["folder"]
    spec = (
        f"name=my_train images={folder / 'images'} labels={folder / 'labels'} "
        f"classes={folder / 'classes.txt'}"
    )
    log = train_on_folder(
        spec,
        "my_train",
        tmp_path,
        *("DATASETS.TEST", "('my_train',)", "INPUT.MIN_SIZE_TRAIN", "(64,)"),
        *("INPUT.MIN_SIZE_TEST", "64"),
    )
    assert "copypaste: mIoU,mIoU_legacy" in log  # evaluated on the folder after training


def test_a_panoptic_folder_gets_the_pq_of_the_registered_dataset(setup, monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(setup["root"]))
    panoptic_on = ("MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True")
    registered = load_script("tools/evaluate_benchmarks.py").main(
        [
            *("--config-file", TINY, "--datasets", "maftp_synthetic_panoptic_val"),
            *("--output-dir", str(tmp_path / "bench"), "MODEL.WEIGHTS", setup["weights"]),
            *panoptic_on,
        ]
    )["maftp_synthetic_panoptic_val"]["panoptic_seg"]
    folder = setup["folder"]
    result = load_script("tools/evaluate_folder.py").main(
        [
            *("--config-file", TINY, "--output-dir", str(tmp_path / "folder")),
            *("--images", str(folder / "images"), "--classes", str(folder / "classes.txt")),
            *("--panoptic-json", str(folder / "panoptic.json")),
            *("--panoptic-pngs", str(folder / "panoptic")),
            *("MODEL.WEIGHTS", setup["weights"], *panoptic_on),
        ]
    )
    assert "sem_seg" not in result  # no semantic maps given: PQ only
    assert result["panoptic_seg"] == registered


def test_train_net_trains_on_a_panoptic_folder(setup, tmp_path):
    folder = setup["folder"]
    spec = (
        f"name=my_panoptic images={folder / 'images'} classes={folder / 'classes.txt'} "
        f"panoptic_json={folder / 'panoptic.json'} panoptic_pngs={folder / 'panoptic'}"
    )
    train_on_folder(
        spec, "my_panoptic", tmp_path, "DATASETS.TEST", "()", "MODEL.MAFT_PLUS.LSJ.IMAGE_SIZE", "64"
    )
