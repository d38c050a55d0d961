"""tools/evaluate_benchmarks.py on the synthetic datasets with the tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import MetadataCatalog
from PIL import Image
from script_loader import load_script

from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.evaluation import segmentation_metrics

REPO = Path(__file__).resolve().parents[2]


def load_tool():
    return load_script("tools/evaluate_benchmarks.py")


def test_evaluates_each_dataset_and_skips_missing_ones(tmp_path, monkeypatch, capsys):
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=1, num_val=2, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    output = tmp_path / "bench"
    results = load_tool().main(
        [
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
            *("--datasets", "maftp_synthetic_sem_seg_val", "maftp_synthetic_panoptic_val"),
            *("maftp_ade150_val", "not_a_dataset"),
            *("--paper", "maftp_l", "--output-dir", str(output)),
            *("MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True"),
        ]
    )
    printed = capsys.readouterr().out
    assert "skipping maftp_ade150_val: dataset 'maftp_ade150_val' expects" in printed
    assert "prepare_ade20k_150.py" in printed
    assert "skipping not_a_dataset: no such dataset is registered" in printed
    assert set(results) == {"maftp_synthetic_sem_seg_val", "maftp_synthetic_panoptic_val"}
    saved = json.loads((output / "results.json").read_text())
    assert "mIoU_legacy" in saved["maftp_synthetic_sem_seg_val"]["sem_seg"]
    assert "PQ" in saved["maftp_synthetic_panoptic_val"]["panoptic_seg"]
    table = (output / "results.md").read_text()
    assert "| maftp_synthetic_panoptic_val | reference | PQ |" in table
    assert (output / "results.csv").read_text().startswith("benchmark,dataset,vocabulary,metric")


def test_a_vocabulary_file_replaces_the_class_names(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=1, num_val=1, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    names = ["disc", "box", "wedge", "star shape", "lawn, turf", "lake", "beach"]
    good = tmp_path / "good.txt"
    good.write_text("0:invalid_class_id\n" + "".join(f"{i}:{n}\n" for i, n in enumerate(names, 1)))
    bad = tmp_path / "bad.txt"
    bad.write_text("1:disc\n2:box\n")
    tool = load_tool()
    base = [
        *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
        *("--datasets", "maftp_synthetic_sem_seg_val", "--output-dir", str(tmp_path / "out")),
    ]
    out = tmp_path / "out"
    seen = []
    original = tool.evaluate_datasets

    def spy(cfg, model, datasets, **kwargs):
        model.register_forward_pre_hook(lambda m, a: seen.append(m.vocabulary.class_names))
        return original(cfg, model, datasets, **kwargs)

    monkeypatch.setattr(tool, "evaluate_datasets", spy)
    with pytest.raises(ValueError, match=r"class 1 \('disc'\) shares no name .*--rename-classes"):
        tool.main([*base, "--vocabulary-file", f"maftp_synthetic_sem_seg_val={good}"])
    tool.main(
        [*base, "--vocabulary-file", f"maftp_synthetic_sem_seg_val={good}", "--rename-classes"]
    )
    assert seen[0] == ("disc", "box", "wedge", "star shape", "lawn", "lake", "beach")
    assert f"| maftp_synthetic_sem_seg_val | {good} | mIoU |" in (out / "results.md").read_text()
    with pytest.raises(ValueError, match=r"bad.txt lists 2 classes but dataset .* has 7"):
        tool.main([*base, "--vocabulary-file", f"maftp_synthetic_sem_seg_val={bad}"])
    swapped = tmp_path / "swapped.txt"
    swapped.write_text(
        "".join(f"{i}:{n}\n" for i, n in enumerate([names[1], names[0], *names[2:]], 1))
    )
    with pytest.raises(ValueError, match=r"swapped.txt: class 1 \('box'\) shares no name"):
        tool.main([*base, "--vocabulary-file", f"maftp_synthetic_sem_seg_val={swapped}"])


def test_unreadable_images_are_skipped_printed_and_listed(tmp_path, monkeypatch, capsys):
    root = tmp_path / "datasets"
    dataset = write_synthetic_dataset(
        root / SYNTHETIC_FOLDER, num_train=1, num_val=2, image_size=64
    )
    broken = dataset.paths("val").images / "00001.jpg"
    broken.write_text("not an image")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    output = tmp_path / "bench"
    results = load_tool().main(
        [
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
            *("--datasets", "maftp_synthetic_sem_seg_val", "--output-dir", str(output)),
        ]
    )
    assert "mIoU" in results["maftp_synthetic_sem_seg_val"]["sem_seg"]
    printed = capsys.readouterr().out
    assert "maftp_synthetic_sem_seg_val: 1 skipped image(s):" in printed
    assert f"  {broken}: could not read the image {broken}" in printed
    (entry,) = json.loads((output / "skipped_files.json").read_text())[
        "maftp_synthetic_sem_seg_val"
    ]
    assert entry["file_name"] == str(broken) and "cannot identify image file" in entry["reason"]


def test_plots_are_written_per_dataset(tmp_path, monkeypatch, capsys):
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=1, num_val=3, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    output = tmp_path / "bench"
    datasets = ["maftp_synthetic_sem_seg_val", "maftp_synthetic_panoptic_val"]
    results = load_tool().main(
        [
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
            *("--datasets", *datasets, "--output-dir", str(output)),
            *("--plots", "--grid-images", "2"),
        ]
    )
    printed = capsys.readouterr().out
    for name in datasets:
        folder = output / name
        for plot in ("per_class_iou.png", "confusion.png", "prediction_grid.png"):
            with Image.open(folder / plot) as image:
                assert image.format == "PNG" and min(image.size) >= 200, (name, plot)
        assert f"{name}: plots " in printed
        with Image.open(folder / "prediction_grid.png") as grid:
            assert grid.height > 0.5 * grid.width  # 2 rows of 3 square pictures, and a legend
        conf = np.load(folder / "sem_seg_confusion.npy")
        num_classes = len(MetadataCatalog.get(name).stuff_classes)
        assert conf.shape == (num_classes + 1, num_classes + 1)
        assert conf.sum() == 3 * 64 * 64  # every pixel of the 3 images, ignored ones included
        miou = results[name]["sem_seg"]["mIoU"]
        assert segmentation_metrics(conf)["mIoU"] == pytest.approx(miou)


def test_no_evaluator_files_without_plots(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=1, num_val=1, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    output = tmp_path / "bench"
    load_tool().main(
        [
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
            *("--datasets", "maftp_synthetic_sem_seg_val", "--output-dir", str(output)),
        ]
    )
    assert {p.name for p in output.iterdir()} == {
        "results.json",
        "results.md",
        "results.csv",
        "skipped_files.json",
        "resume",  # the saved state that --resume reads (evaluation/resume.py)
    }


def test_grid_images_must_not_be_negative(capsys):
    with pytest.raises(SystemExit):
        load_tool().parse_args(["--config-file", "x.yaml", "--plots", "--grid-images", "-1"])
    assert "--grid-images must be >= 0, got -1" in capsys.readouterr().err
