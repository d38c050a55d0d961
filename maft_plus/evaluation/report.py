"""Benchmark results as a table beside the paper's numbers: rows, markdown and CSV."""

import csv
import io
from collections.abc import Mapping

from .paper import BENCHMARK_LABELS

SEMANTIC_METRICS = ("mIoU",)
PANOPTIC_METRICS = ("PQ", "SQ", "RQ")
COLUMNS = ("benchmark", "dataset", "vocabulary", "metric", "ours", "ours_legacy", "paper", "delta")


def results_table(
    results: Mapping[str, Mapping],
    paper: Mapping[str, Mapping[str, float]] | None = None,
    vocabularies: Mapping[str, str] | None = None,
) -> list[dict]:
    """One row per (dataset, metric).

    Args:
        results: dataset name -> detectron2 evaluator results (``{"sem_seg": {...}}`` and/or
            ``{"panoptic_seg": {...}}``).
        paper: dataset name -> metric -> published value, or None.
        vocabularies: dataset name -> the class names it was evaluated with ("reference",
            "plain" or a vocabulary file), or None.

    Returns:
        Rows with the keys of ``COLUMNS``: ``ours`` is the current metric, ``ours_legacy`` the
        legacy mIoU (semantic rows only), ``paper`` the published number and ``delta`` the
        difference of the number comparable to it (the legacy mIoU for semantic rows, as the
        released evaluator used it), or None where missing.
    """
    rows = []
    for dataset, result in results.items():
        published = (paper or {}).get(dataset, {})
        label = BENCHMARK_LABELS.get(dataset, dataset)
        names = (vocabularies or {}).get(dataset)
        for metric in PANOPTIC_METRICS:
            if metric in result.get("panoptic_seg", {}):
                ours = result["panoptic_seg"][metric]
                rows.append(_row(label, dataset, names, metric, ours, None, published.get(metric)))
        if "sem_seg" in result:
            semantic = result["sem_seg"]
            ours, legacy = semantic.get("mIoU"), semantic.get("mIoU_legacy")
            rows.append(_row(label, dataset, names, "mIoU", ours, legacy, published.get("mIoU")))
    return rows


def _row(label, dataset, vocabulary, metric, ours, legacy, paper) -> dict:
    comparable = legacy if legacy is not None else ours
    delta = None if paper is None or comparable is None else comparable - paper
    return {
        "benchmark": label,
        "dataset": dataset,
        "vocabulary": vocabulary,
        "metric": metric,
        "ours": ours,
        "ours_legacy": legacy,
        "paper": paper,
        "delta": delta,
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def to_markdown(rows: list[dict]) -> str:
    """A markdown table; mIoU (legacy) is the released evaluator's definition."""
    header = (
        "| benchmark | vocabulary | metric | ours | ours (legacy mIoU) | paper | ours - paper |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "-" if r["delta"] is None else f"{r['delta']:+.1f}"
        vocabulary = _fmt(r["vocabulary"])
        cells = (r["benchmark"], vocabulary, r["metric"], _fmt(r["ours"]), _fmt(r["ours_legacy"]))
        lines.append("| " + " | ".join((*cells, _fmt(r["paper"]), delta)) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    """CSV with the columns of ``COLUMNS`` (empty cells where a value is missing)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    return out.getvalue()
