"""The published MAFT+ numbers (paper Tables 1-2).

Keyed by the model (``maftp_l``, ``maftp_b``, ``maftp_l_pano``), then by our dataset name, then
by metric. Semantic numbers are mIoU as the released evaluator computed it (the legacy
definition, see ``sem_seg_evaluation.py``).
"""

BENCHMARK_LABELS = {
    "maftp_ade847_val": "A-847",
    "maftp_ade150_val": "A-150",
    "maftp_pc459_val": "PC-459",
    "maftp_pc59_val": "PC-59",
    "maftp_pas20_val": "PAS-20",
    "maftp_pas21_val": "PAS-21",
    "maftp_ade150_panoptic_val": "ADE panoptic",
}
SEMANTIC_BENCHMARKS = (
    "maftp_ade847_val",
    "maftp_ade150_val",
    "maftp_pc459_val",
    "maftp_pc59_val",
    "maftp_pas20_val",
)
PANOPTIC_BENCHMARKS = ("maftp_ade150_panoptic_val",)


def _semantic(values: tuple[float, ...]) -> dict[str, dict[str, float]]:
    return {name: {"mIoU": v} for name, v in zip(SEMANTIC_BENCHMARKS, values, strict=True)}


PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "maftp_l": _semantic((15.1, 36.1, 21.6, 59.4, 96.5)),
    "maftp_b": _semantic((13.8, 34.6, 16.2, 57.5, 95.4)),
    "maftp_l_pano": {"maftp_ade150_panoptic_val": {"PQ": 27.1, "SQ": 73.5, "RQ": 32.9}},
}
