"""maft_plus.evaluation.plots: what the pictures show, that they are written, and bad input."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maft_plus.evaluation.plots import (
    NO_CLASS_COLOR,
    confused_classes,
    iou_bars,
    label_colors,
    plot_confusion,
    plot_per_class_iou,
    write_prediction_grid,
)
from maft_plus.visualization import class_color

REPO = Path(__file__).resolve().parents[2]


def read_png(path: Path) -> np.ndarray:
    """The (H, W, 3) pixels of a PNG file, checked to be one and of a plausible size."""
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= 200 and max(image.size) <= 8000, image.size
        return np.asarray(image.convert("RGB"))


def random_iou(num_classes: int, seed: int = 0) -> dict[str, float]:
    """Class name -> IoU in percent; every 7th class (from 3) absent (NaN)."""
    values = np.random.default_rng(seed).uniform(0, 100, num_classes)
    return {f"class {k}": math.nan if k % 7 == 3 else float(values[k]) for k in range(num_classes)}


def test_iou_bars_drop_absent_classes_and_sort():
    bars, hidden = iou_bars({"a": 10.0, "b": math.nan, "c": 90.0, "d": 10.0, "e": 0.0})
    assert bars == [("c", 90.0), ("a", 10.0), ("d", 10.0), ("e", 0.0)] and hidden == 0


def test_iou_bars_show_150_classes_and_cap_847():
    iou_150 = {f"class {k}": float(k % 100) for k in range(150)}
    assert len(iou_bars(iou_150)[0]) == 150
    iou_847 = {f"class {k}": 100 * k / 846 for k in range(847)}
    bars, hidden = iou_bars(iou_847)
    assert hidden == 847 - 60
    assert [name for name, _ in bars] == [
        f"class {k}" for k in [*range(846, 816, -1), *range(29, -1, -1)]
    ]


@pytest.mark.parametrize(
    ("per_class_iou", "match"),
    [
        ({}, "non-empty mapping"),
        ([("a", 1.0)], "non-empty mapping"),
        ({"a": math.nan, "b": math.nan}, "all 2 values are NaN"),
        ({"a": 101.0}, r"per_class_iou\['a'\]: expected an IoU in \[0, 100\]"),
        ({"a": "high"}, r"per_class_iou\['a'\]: expected a number"),
    ],
)
def test_iou_plot_rejects_bad_input(tmp_path, per_class_iou, match):
    with pytest.raises(ValueError, match=match):
        plot_per_class_iou(per_class_iou, tmp_path / "iou.png")
    assert not (tmp_path / "iou.png").exists()


def test_iou_plots_are_written_and_sized_by_the_classes_shown(tmp_path):
    heights = {}
    for num_classes in (7, 150, 847):
        path = plot_per_class_iou(random_iou(num_classes), tmp_path / f"iou_{num_classes}.png")
        assert path == tmp_path / f"iou_{num_classes}.png"
        heights[num_classes] = read_png(path).shape[0]
    # 6 bars, 129 bars (all present of 150), 60 bars and a gap row (of 726 present of 847).
    assert heights[7] < heights[847] < heights[150]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iou_150.png", "iou_7.png", "iou_847.png"]


def test_iou_plot_changes_with_the_values(tmp_path):
    first = read_png(plot_per_class_iou(random_iou(20, seed=0), tmp_path / "a.png"))
    second = read_png(plot_per_class_iou(random_iou(20, seed=1), tmp_path / "b.png"))
    again = read_png(plot_per_class_iou(random_iou(20, seed=0), tmp_path / "c.png"))
    assert first.shape == second.shape and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)  # deterministic


# K = 4 classes + ignore; rows = prediction, columns = ground truth.
CONF = np.array(
    [
        [50, 0, 0, 0, 9],  # predicted 0
        [0, 40, 30, 0, 9],  # predicted 1: 30 pixels of class 2
        [0, 10, 20, 0, 9],  # predicted 2: 10 pixels of class 1
        [5, 0, 0, 80, 9],  # predicted 3: 5 pixels of class 0
        [0, 0, 0, 0, 0],  # ignore row: empty
    ]
)


def test_confused_classes_ranks_by_off_diagonal_pixels():
    # Off-diagonal pixels in each class's row and column: 0: 5, 1: 30 + 10, 2: 10 + 30, 3: 5.
    # Ties go to more ground-truth pixels (0: 55 < 3: 80), then the lower id (1 and 2: 50 each).
    assert confused_classes(CONF, top=4).tolist() == [1, 2, 3, 0]
    assert confused_classes(CONF, top=2).tolist() == [1, 2]
    only_class_0 = np.zeros((5, 5))
    only_class_0[0, 0] = 7  # no confusion; classes 1..3 neither confused nor in the ground truth
    assert confused_classes(only_class_0, top=3).tolist() == [0]


@pytest.mark.parametrize(
    ("conf", "names", "top", "match"),
    [
        (np.zeros((4,)), list("abc"), 3, "square"),
        (np.zeros((3, 4)), list("abc"), 3, "square"),
        (CONF, list("abc"), 3, "expected 4 names"),
        (-CONF, list("abcd"), 3, ">= 0"),
        (np.zeros((5, 5)), list("abcd"), 3, "no labelled pixel"),
        (CONF, list("abcd"), 0, "top: expected a positive int"),
    ],
)
def test_confusion_plot_rejects_bad_input(tmp_path, conf, names, top, match):
    with pytest.raises(ValueError, match=match):
        plot_confusion(conf, names, tmp_path / "confusion.png", top=top)


def test_confusion_plot_is_written_and_follows_the_matrix(tmp_path):
    names = ["road", "car", "truck", "sky"]
    first = read_png(plot_confusion(CONF, names, tmp_path / "a.png"))
    changed = CONF.copy()
    changed[1, 2], changed[2, 2] = 5, 45  # truck now mostly right
    second = read_png(plot_confusion(changed, names, tmp_path / "b.png"))
    again = read_png(plot_confusion(CONF, names, tmp_path / "c.png"))
    assert first.shape == second.shape and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    big = np.random.default_rng(0).integers(0, 50, (151, 151))
    wide = read_png(plot_confusion(big, [f"class {k}" for k in range(150)], tmp_path / "d.png"))
    assert wide.shape[1] > first.shape[1]  # 20 classes shown, not 4


def test_label_colors_are_the_class_colors():
    labels = np.array([[0, 3, 255], [-1, 3, 0]])
    picture = label_colors(labels, 4, ignore_label=255)
    assert picture.shape == (2, 3, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 0]) == tuple(picture[1, 2]) == class_color(0)
    assert tuple(picture[0, 1]) == class_color(3)
    assert tuple(picture[0, 2]) == tuple(picture[1, 0]) == NO_CLASS_COLOR
    with pytest.raises(ValueError, match=r"class ids in 0..3 or the ignore label 255, got \[4\]"):
        label_colors(np.array([[4]]), 4, ignore_label=255)
    with pytest.raises(ValueError, match="integer"):
        label_colors(np.zeros((2, 2)), 4, ignore_label=255)


def block_sample(height: int, width: int, left: int, right: int) -> tuple:
    """An image with its prediction (class `left` | class `right`) and a ground truth (all
    `left`, the top quarter ignored)."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    prediction = np.full((height, width), left)
    prediction[:, width // 2 :] = right
    ground_truth = np.full((height, width), left)
    ground_truth[: height // 4] = 255
    return image, prediction, ground_truth


def test_prediction_grid_shows_the_classes_present_in_their_colors(tmp_path):
    names = [f"class {k}" for k in range(10)]
    samples = [block_sample(64, 64, 1, 4), block_sample(48, 96, 6, 1)]
    pixels = read_png(write_prediction_grid(samples, names, tmp_path / "grid.png"))
    colors = {tuple(c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}
    for k in range(10):
        assert (class_color(k) in colors) == (k in (1, 4, 6)), k
    assert NO_CLASS_COLOR in colors
    one = read_png(write_prediction_grid(samples[:1], names, tmp_path / "one.png"))
    assert one.shape[0] < pixels.shape[0]  # one row per sample


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: [], "non-empty sequence"),
        (lambda s: [s[0][:2]], r"samples\[0\]: expected \(image, prediction, ground truth\)"),
        (lambda s: [(s[0][0][..., 0], *s[0][1:])], r"samples\[0\] image: expected \(H, W, 3\)"),
        (
            lambda s: [s[0], (s[0][0], s[0][1][:10], s[0][2])],
            r"samples\[1\] prediction: expected the image's \(H, W\) \(64, 64\)",
        ),
        (
            lambda s: [(s[0][0], s[0][1], s[0][2] + 20)],
            r"samples\[0\] ground truth: labels: expected class ids in 0..9",
        ),
    ],
)
def test_prediction_grid_rejects_bad_samples(tmp_path, change, match):
    samples = [block_sample(64, 64, 1, 4)]
    with pytest.raises(ValueError, match=match):
        write_prediction_grid(change(samples), [f"c{k}" for k in range(10)], tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_plots_leave_pyplot_and_the_global_settings_alone(tmp_path):
    # In a fresh process, where nothing imported pyplot. rcParams are compared as copies: reading
    # rcParams["backend"] itself would resolve the backend through pyplot.
    code = f"""
import sys, matplotlib, numpy as np
before = matplotlib.rcParams.copy()
from maft_plus.evaluation import plots
out = {str(tmp_path)!r}
plots.plot_per_class_iou({{"a": 50.0}}, out + "/iou.png")
plots.plot_confusion(np.eye(3, dtype=int), ["a", "b"], out + "/confusion.png")
sample = (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), int), np.ones((8, 8), int))
plots.write_prediction_grid([sample], ["a", "b"], out + "/grid.png")
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert matplotlib.rcParams.copy() == before, "rcParams changed"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "grid.png", "iou.png"]
