"""Benchmark tables: rows, markdown and CSV against the paper's numbers."""

from maft_plus.evaluation.paper import PAPER_RESULTS
from maft_plus.evaluation.report import results_table, to_csv, to_markdown

RESULTS = {
    "maftp_ade150_val": {"sem_seg": {"mIoU": 37.0, "mIoU_legacy": 36.0, "fwIoU": 60.0}},
    "maftp_ade150_panoptic_val": {
        "panoptic_seg": {"PQ": 27.0, "SQ": 73.0, "RQ": 33.0, "PQ_th": 1.0},
        "sem_seg": {"mIoU": 30.0, "mIoU_legacy": 29.5},
    },
    "my_dataset": {"sem_seg": {"mIoU": 50.0, "mIoU_legacy": 40.0}},
}


def test_rows_compare_the_legacy_miou_and_pq_with_the_paper():
    paper = {**PAPER_RESULTS["maftp_l"], **PAPER_RESULTS["maftp_l_pano"]}
    rows = results_table(RESULTS, paper)
    by_key = {(r["dataset"], r["metric"]): r for r in rows}
    a150 = by_key[("maftp_ade150_val", "mIoU")]
    assert (a150["benchmark"], a150["ours"], a150["ours_legacy"], a150["paper"]) == (
        "A-150",
        37.0,
        36.0,
        36.1,
    )
    assert abs(a150["delta"] - (36.0 - 36.1)) < 1e-9
    pq = by_key[("maftp_ade150_panoptic_val", "PQ")]
    assert (pq["ours"], pq["paper"], pq["ours_legacy"]) == (27.0, 27.1, None)
    assert by_key[("my_dataset", "mIoU")]["paper"] is None
    assert by_key[("my_dataset", "mIoU")]["delta"] is None
    assert len(rows) == 6  # A-150 mIoU; panoptic PQ, SQ, RQ, mIoU; my_dataset mIoU


def test_markdown_and_csv_name_the_vocabulary():
    vocabularies = {"maftp_ade150_val": "reference", "my_dataset": "mine.txt"}
    rows = results_table(RESULTS, PAPER_RESULTS["maftp_l"], vocabularies)
    markdown = to_markdown(rows).splitlines()
    assert markdown[0].startswith(
        "| benchmark | vocabulary | metric | ours | ours (legacy mIoU) | paper |"
    )
    assert "| A-150 | reference | mIoU | 37.0 | 36.0 | 36.1 | -0.1 |" in markdown
    assert "| my_dataset | mine.txt | mIoU | 50.0 | 40.0 | - | - |" in markdown
    assert "| ADE panoptic | - | PQ | 27.0 | - | - | - |" in markdown  # not given: "-"
    csv_lines = to_csv(rows).splitlines()
    assert csv_lines[0] == "benchmark,dataset,vocabulary,metric,ours,ours_legacy,paper,delta"
    assert csv_lines[1].startswith("A-150,maftp_ade150_val,reference,mIoU,37.0,36.0,36.1,")
