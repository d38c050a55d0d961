"""Pictures of evaluation results: per-class IoU bars, the most-confused classes, prediction grids.

Drawn on ``matplotlib.figure.Figure`` objects with the Agg renderer, never through pyplot: no
window opens and no backend, style or rcParams of other code changes. Each function writes one
PNG, atomically (:func:`maft_plus.files.write_atomically`), and returns its path.

Shapes: K classes; H, W an image (each sample its own); N samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..colors import class_color
from ..files import write_atomically

__all__ = [
    "confused_classes",
    "iou_bars",
    "label_colors",
    "plot_confusion",
    "plot_per_class_iou",
    "write_prediction_grid",
]

# The per-class IoU chart shows every class up to this many (all of A-150), ...
MAX_IOU_BARS = 150
# ... else (PC-459, A-847) this many of the highest and as many of the lowest.
IOU_BARS_PER_END = 30
# The prediction grid's legend lists at most this many classes, the largest first.
MAX_LEGEND_CLASSES = 60
# "No class" pixels of the grid (ignored ground truth, no prediction): class colours are never
# near black (see maft_plus.visualization.class_color).
NO_CLASS_COLOR = (0, 0, 0)
_DPI = 100


def iou_bars(
    per_class_iou: Mapping[str, float],
    *,
    max_bars: int = MAX_IOU_BARS,
    per_end: int = IOU_BARS_PER_END,
) -> tuple[list[tuple[str, float]], int]:
    """The (class name, IoU) bars of the chart, highest IoU first, and how many are left out.

    Classes with a NaN IoU (absent from the ground truth) are dropped. Of more than ``max_bars``
    classes, only the ``per_end`` highest and ``per_end`` lowest are kept; the number left out
    between them is returned. Ties are ordered by name.
    """
    if not isinstance(per_class_iou, Mapping) or not per_class_iou:
        raise ValueError(
            f"per_class_iou: expected a non-empty mapping of class name -> IoU in percent, got "
            f"{per_class_iou!r:.80}"
        )
    if not 1 <= 2 * per_end <= max_bars:
        raise ValueError(f"expected 1 <= per_end <= max_bars / 2, got {per_end} and {max_bars}")
    values = []
    for name, value in per_class_iou.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"per_class_iou[{name!r}]: expected a number, got {value!r}")
        if math.isnan(value):
            continue
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"per_class_iou[{name!r}]: expected an IoU in [0, 100], got {value}")
        values.append((str(name), float(value)))
    if not values:
        raise ValueError(
            f"per_class_iou: all {len(per_class_iou)} values are NaN (no class is in the ground "
            "truth); nothing to plot"
        )
    values.sort(key=lambda item: (-item[1], item[0]))
    if len(values) <= max_bars:
        return values, 0
    return values[:per_end] + values[-per_end:], len(values) - 2 * per_end


def plot_per_class_iou(
    per_class_iou: Mapping[str, float], path: str | Path, *, title: str = ""
) -> Path:
    """A horizontal bar chart of the IoU of each class, highest on top, with their mean.

    All classes up to ``MAX_IOU_BARS`` (150) present; of more, the ``IOU_BARS_PER_END`` (30)
    highest and lowest with a note of how many are between (see :func:`iou_bars`).

    Args:
        per_class_iou: class name -> IoU in percent (detectron2's ``IoU-<name>`` results without
            the prefix); NaN for the classes absent from the ground truth, which are left out.
        path: the PNG to write.
        title: the chart's title.

    Returns:
        ``path``, as a Path.
    """
    bars, num_hidden = iou_bars(per_class_iou)
    present = [v for v in per_class_iou.values() if not math.isnan(v)]
    mean = float(np.mean(present))
    # One row per bar, top to bottom; with classes left out, a gap row between the two ends.
    split = len(bars) // 2 if num_hidden else len(bars)
    rows = [i + (i >= split) for i in range(len(bars))]
    num_rows = rows[-1] + 1
    values = np.array([value for _, value in bars])  # (bars,)

    figure = _figure(8.0, 1.4 + 0.22 * num_rows)
    ax = figure.add_subplot()
    ax.barh(rows, values, height=0.75, color=matplotlib.colormaps["viridis"](values / 100.0))
    for row, value in zip(rows, values, strict=True):
        ax.text(value + 0.8, row, f"{value:.1f}", va="center", fontsize=7)
    if num_hidden:
        note = f"... {num_hidden} classes between these not shown ..."
        ax.text(50, split, note, ha="center", va="center", fontsize=8, style="italic")
    ax.axvline(mean, color="crimson", linestyle="--", linewidth=1)
    ax.set_yticks(rows, [name for name, _ in bars], fontsize=7)
    ax.set_ylim(num_rows - 0.5, -0.5)  # the first row on top
    ax.set_xlim(0, 108)
    ax.set_xlabel(f"IoU (%); dashed: the mean, {mean:.1f}, over the {len(present)} classes present")
    half = len(bars) // 2
    shown = f"the {half} highest and {half} lowest of " if num_hidden else ""
    ax.set_title(_title(title, f"per-class IoU, {shown}{len(present)} classes"), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def confused_classes(conf_matrix: np.ndarray, *, top: int) -> np.ndarray:
    """The ids of the (at most) ``top`` classes involved in the most confusion, most first.

    A class's confusion is the off-diagonal pixels of its row and column in the (K, K) block
    without ignore: its ground-truth pixels predicted as another class plus the pixels of other
    classes predicted as it. Classes neither confused nor in the ground truth are never picked;
    ties go to the class with more ground-truth pixels, then the lower id.
    """
    counts = _check_confusion(conf_matrix)  # (K, K)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top: expected a positive int, got {top!r}")
    wrong = counts.copy()
    np.fill_diagonal(wrong, 0)
    confusion = wrong.sum(axis=0) + wrong.sum(axis=1)  # (K,)
    in_gt = counts.sum(axis=0)  # (K,) ground-truth pixels per class
    order = np.lexsort((np.arange(len(counts)), -in_gt, -confusion))  # last key sorts first
    order = order[(confusion[order] > 0) | (in_gt[order] > 0)]
    return order[:top]


def plot_confusion(
    conf_matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    top: int = 20,
    title: str = "",
) -> Path:
    """The confusion among the ``top`` most-confused classes (:func:`confused_classes`).

    Args:
        conf_matrix: (K+1, K+1) pixel counts as in ``OpenVocabSemSegEvaluator``: rows are
            predictions, columns ground truth, index K the ignore / "no prediction" slot.
        class_names: the K class names.
        path: the PNG to write.
        top: how many classes to show.
        title: the picture's title.

    Each row is a ground-truth class, each column a predicted class; a cell is the percentage of
    the row class's (not ignored) pixels predicted as the column class, so a row sums to 100 with
    the last column, "other", the pixels predicted as a class not shown (or not predicted).
    """
    chosen = confused_classes(conf_matrix, top=top)  # (n,)
    matrix = np.asarray(conf_matrix, dtype=np.float64)
    if len(class_names) != len(matrix) - 1:
        raise ValueError(
            f"class_names: expected {len(matrix) - 1} names for a {matrix.shape} conf_matrix, got "
            f"{len(class_names)}"
        )
    gt_pixels = matrix[:, chosen].sum(axis=0)  # (n,) every prediction of each class, none too
    shown = matrix[np.ix_(chosen, chosen)].T  # (n, n) [ground truth, prediction]
    other = gt_pixels - shown.sum(axis=1)  # (n,) predicted as a class not shown, or nothing
    with np.errstate(invalid="ignore", divide="ignore"):  # a class absent from the ground truth
        percent = 100 * np.column_stack([shown, other]) / gt_pixels[:, None]  # (n, n + 1)

    names = [str(class_names[k]) for k in chosen]
    size = 2.5 + 0.42 * (len(chosen) + 1)
    figure = _figure(size + 1.5, size)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(percent), cmap="Blues", vmin=0, vmax=100)
    for (row, column), value in np.ndenumerate(percent):
        if not math.isnan(value):
            color = "white" if value > 55 else "black"
            ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(names) + 1), [*names, "other"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    figure.colorbar(image, ax=ax, fraction=0.04, label="% of the ground-truth class's pixels")
    detail = f"the {len(chosen)} most confused of {len(matrix) - 1} classes"
    ax.set_title(_title(title, f"confusion, {detail}"), fontsize=10)
    return _save(figure, path)


def label_colors(labels: np.ndarray, num_classes: int, *, ignore_label: int) -> np.ndarray:
    """The (H, W, 3) uint8 picture of an (H, W) class-id map in the class colours.

    Ids equal to ``ignore_label`` or negative are "no class" (black); other ids must be < K.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected an (H, W) integer class-id map, got {labels.dtype} {labels.shape}"
        )
    none = (labels == ignore_label) | (labels < 0)  # (H, W)
    bad = np.unique(labels[~none & (labels >= num_classes)])
    if bad.size:
        raise ValueError(
            f"labels: expected class ids in 0..{num_classes - 1} or the ignore label "
            f"{ignore_label}, got {bad[:10].tolist()}"
        )
    present = np.unique(labels[~none])  # sorted
    palette = np.array([NO_CLASS_COLOR, *(class_color(int(k)) for k in present)], np.uint8)
    # Index 0 of the palette is "no class", index i + 1 the i-th present class.
    index = np.where(none, 0, np.searchsorted(present, np.where(none, 0, labels)) + 1)  # (H, W)
    return palette[index]  # (H, W, 3)


def write_prediction_grid(
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    ignore_label: int = 255,
) -> Path:
    """One row per sample, image | prediction | ground truth, and a legend of the classes shown.

    Args:
        samples: N tuples of the (H, W, 3) uint8 RGB image, its (H, W) integer predicted class
            ids and its (H, W) integer ground-truth class ids (``ignore_label`` = not labelled).
        class_names: the K class names, by id.
        path: the PNG to write.
        ignore_label: "no class" in the maps (negative ids are too); drawn black.

    Classes take their ``maft_plus.visualization.class_color`` in both maps. The legend lists the
    classes present, most pixels first, at most ``MAX_LEGEND_CLASSES`` (then a count of the rest).
    """
    if isinstance(samples, np.ndarray) or not isinstance(samples, Sequence) or not samples:
        raise ValueError("samples: expected a non-empty sequence of (image, prediction, gt)")
    if not class_names:
        raise ValueError("class_names: expected the K class names, got none")
    num_classes = len(class_names)
    rows, pixels = [], np.zeros(num_classes + 1, dtype=np.int64)  # last: "no class"
    for n, sample in enumerate(samples):
        if not isinstance(sample, tuple | list) or len(sample) != 3:
            raise ValueError(f"samples[{n}]: expected (image, prediction, ground truth)")
        image, prediction, ground_truth = (np.asarray(a) for a in sample)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"samples[{n}] image: expected (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}"
            )
        pictures = [image]
        for what, labels in (("prediction", prediction), ("ground truth", ground_truth)):
            if labels.shape != image.shape[:2]:
                raise ValueError(
                    f"samples[{n}] {what}: expected the image's (H, W) {image.shape[:2]}, got "
                    f"{labels.shape}"
                )
            try:
                pictures.append(label_colors(labels, num_classes, ignore_label=ignore_label))
            except ValueError as exc:
                raise ValueError(f"samples[{n}] {what}: {exc}") from exc
            ids = np.where((labels == ignore_label) | (labels < 0), num_classes, labels)
            pixels += np.bincount(ids.reshape(-1), minlength=num_classes + 1)
        rows.append(pictures)

    present = [k for k in np.argsort(-pixels[:-1], kind="stable") if pixels[k] > 0]
    handles = [
        Patch(color=np.array(class_color(int(k))) / 255, label=str(class_names[k]))
        for k in present[:MAX_LEGEND_CLASSES]
    ]
    if pixels[-1]:
        handles.append(Patch(color=np.array(NO_CLASS_COLOR) / 255, label="no class / ignored"))
    if len(present) > MAX_LEGEND_CLASSES:
        more = f"... {len(present) - MAX_LEGEND_CLASSES} more classes"
        handles.append(Patch(color="white", label=more))
    num_columns = 4
    legend_height = 0.3 + 0.22 * math.ceil(len(handles) / num_columns)
    aspects = [pictures[0].shape[0] / pictures[0].shape[1] for pictures in rows]  # H / W each
    figure = _figure(9.0, 0.4 + sum(2.9 * a + 0.1 for a in aspects) + legend_height)
    grid = figure.add_gridspec(len(rows), 3, height_ratios=aspects)
    for n, pictures in enumerate(rows):
        for column, (picture, heading) in enumerate(
            zip(pictures, ("image", "prediction", "ground truth"), strict=True)
        ):
            ax = figure.add_subplot(grid[n, column])
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            if n == 0:
                ax.set_title(heading, fontsize=10)
    figure.legend(
        handles=handles, loc="outside lower center", ncol=num_columns, fontsize=8, frameon=False
    )
    return _save(figure, path)


def _check_confusion(conf_matrix: np.ndarray) -> np.ndarray:
    """The (K, K) block without ignore of a checked (K+1, K+1) confusion matrix, as floats."""
    matrix = np.asarray(conf_matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or len(matrix) < 2:
        raise ValueError(
            f"conf_matrix: expected a square (K+1, K+1) matrix with K >= 1, got {matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.number) or not np.isfinite(matrix).all():
        raise ValueError(f"conf_matrix: expected finite pixel counts, got dtype {matrix.dtype}")
    if (matrix < 0).any():
        raise ValueError("conf_matrix: expected pixel counts >= 0, got negative ones")
    counts = matrix[:-1, :-1].astype(np.float64)  # (K, K)
    if not counts.any():
        raise ValueError("conf_matrix: no labelled pixel outside the ignore row and column")
    return counts


def _figure(width: float, height: float) -> Figure:
    """A figure of this size in inches on its own Agg canvas (no pyplot)."""
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _title(title: str, detail: str) -> str:
    return f"{title}\n{detail}" if title else detail


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=_DPI))
    return path
