"""Evaluation with broken files: the others are evaluated exactly as without them, and each broken
file is reported with its reason (log, on_skipped, the JSON report)."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.evaluation import NothingEvaluatedError
from maft_plus.evaluation.loop import evaluate_datasets
from maft_plus.modeling import MAFTPlus

TINY = "configs/tiny/maftp_tiny.yaml"
PREFIX = "maftp_skiptest"
NUM_VAL = 10
GOOD = [0, 7, 9]  # val images left intact
# val image index -> (fault, expected reason as a regex)
FAULTS = {
    1: ("truncated jpeg", r"could not read the image .*half1\.jpg: image file is truncated"),
    2: ("text as jpeg", r"could not read the image .*notes2\.jpg: cannot identify image file"),
    3: ("missing image", r"image .*gone3\.jpg not found"),
    4: ("missing label", r"label .*gone4\.png of image .*00004\.jpg not found"),
    5: ("label of the wrong size", r"label .*small5\.png is 48x32 \(WxH\) but its image"),
    6: ("label id >= K", r"label .*ids6\.png holds class ids \[100\] outside 0\.\.6 \(ignore"),
    8: (
        "truncated png label",
        r"could not read the label .*half8\.png of image .*: image file is truncated",
    ),
}
SEM_SEG, SEM_SEG_GOOD, PANOPTIC, PANOPTIC_GOOD, HOPELESS = (
    f"{PREFIX}_{suffix}"
    for suffix in ("broken_sem_seg", "good_sem_seg", "broken_panoptic", "good_panoptic", "none")
)


def half(path: Path, target: Path) -> str:
    data = path.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return str(target)


def break_record(record: dict, index: int, folder: Path) -> dict:
    """A copy of val record ``index`` with its fault (FAULTS), written under ``folder``."""
    record = dict(record)
    fault = FAULTS[index][0]
    if fault == "truncated jpeg":
        record["file_name"] = half(Path(record["file_name"]), folder / f"half{index}.jpg")
    elif fault == "text as jpeg":
        (folder / f"notes{index}.jpg").write_text("not an image")
        record["file_name"] = str(folder / f"notes{index}.jpg")
    elif fault == "missing image":
        record["file_name"] = str(folder / f"gone{index}.jpg")
    elif fault == "missing label":
        record["sem_seg_file_name"] = str(folder / f"gone{index}.png")
    elif fault == "label of the wrong size":
        Image.fromarray(np.zeros((32, 48), dtype=np.uint8)).save(folder / f"small{index}.png")
        record["sem_seg_file_name"] = str(folder / f"small{index}.png")
    elif fault == "label id >= K":
        label = np.array(Image.open(record["sem_seg_file_name"]))
        label[10:20, 10:20] = 100  # neither one of the 7 classes nor the ignore label 255
        Image.fromarray(label).save(folder / f"ids{index}.png")
        record["sem_seg_file_name"] = str(folder / f"ids{index}.png")
    elif fault == "truncated png label":
        record["sem_seg_file_name"] = half(
            Path(record["sem_seg_file_name"]), folder / f"half{index}.png"
        )
    return record


def register(name: str, records: list[dict], like: str) -> None:
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    metadata = MetadataCatalog.get(like).as_dict()
    metadata.pop("name")
    MetadataCatalog.get(name).set(**metadata)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, list[dict]]:
    """Broken and good-only copies of the synthetic semantic and panoptic val sets."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_train=1, num_val=NUM_VAL, image_size=64)
    names = register_synthetic(root, prefix=PREFIX)
    broken_folder = tmp_path_factory.mktemp("broken")
    sem_seg = DatasetCatalog.get(f"{PREFIX}_sem_seg_val")
    broken = [
        break_record(r, i, broken_folder) if i in FAULTS else r for i, r in enumerate(sem_seg)
    ]
    register(SEM_SEG, broken, f"{PREFIX}_sem_seg_val")
    register(SEM_SEG_GOOD, [sem_seg[i] for i in GOOD], f"{PREFIX}_sem_seg_val")
    # all skipped: one image unreadable (mapper), one label with an id >= K (evaluator)
    register(HOPELESS, [broken[1], broken[6]], f"{PREFIX}_sem_seg_val")

    panoptic = DatasetCatalog.get(f"{PREFIX}_panoptic_val")[:4]
    panoptic_broken = [dict(r) for r in panoptic]
    panoptic_broken[1]["file_name"] = broken[1]["file_name"]  # truncated image
    panoptic_broken[2]["pan_seg_file_name"] = str(broken_folder / "gone.png")
    register(PANOPTIC, panoptic_broken, f"{PREFIX}_panoptic_val")
    register(PANOPTIC_GOOD, [panoptic[0], panoptic[3]], f"{PREFIX}_panoptic_val")
    yield {SEM_SEG: broken, PANOPTIC: panoptic_broken}
    unregister([*names, SEM_SEG, SEM_SEG_GOOD, PANOPTIC, PANOPTIC_GOOD, HOPELESS])


@pytest.fixture
def loop_logs(caplog):
    """The loop's log records (twice where they also propagate to the root logger), wherever
    detectron2's setup_logger stopped propagation."""
    logger = logging.getLogger("maft_plus.evaluation.loop")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def tiny_model(cfg) -> MAFTPlus:
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(["x"])
    return model


def test_broken_files_are_skipped_and_the_rest_evaluated_as_without_them(
    datasets, tmp_path, loop_logs
):
    from train_net import Trainer

    cfg = setup_cfg(TINY, ["DATASETS.TEST", f"('{SEM_SEG}',)", "OUTPUT_DIR", str(tmp_path)])
    model = tiny_model(cfg)
    results = Trainer.test(cfg, model)[SEM_SEG]
    expected = evaluate_datasets(cfg, model, [SEM_SEG_GOOD])[SEM_SEG_GOOD]
    assert 0 < results["sem_seg"]["pACC"] <= 100
    np.testing.assert_equal(results, expected)  # NaN (class absent) equals NaN here

    report = json.loads((tmp_path / "inference" / "skipped_files.json").read_text())
    skipped = {s["file_name"]: s["reason"] for s in report[SEM_SEG]}
    assert len(skipped) == len(report[SEM_SEG]) == len(FAULTS)
    for index, (fault, reason) in FAULTS.items():
        file_name = datasets[SEM_SEG][index]["file_name"]
        assert re.search(reason, skipped[file_name]), (fault, skipped[file_name])
    (summary,) = {r.getMessage() for r in loop_logs.records if "images skipped" in r.getMessage()}
    assert summary.startswith(f"{SEM_SEG}: {len(FAULTS)} of {NUM_VAL} images skipped")
    assert all(file_name in summary for file_name in skipped)


def test_panoptic_quality_over_the_readable_images(datasets):
    cfg = setup_cfg(TINY, ["MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True"])
    model = tiny_model(cfg)
    reported = {}
    results = evaluate_datasets(
        cfg, model, [PANOPTIC, PANOPTIC_GOOD], on_skipped=lambda n, s: reported.update({n: s})
    )
    assert {"PQ", "SQ", "RQ"} <= set(results[PANOPTIC]["panoptic_seg"])
    np.testing.assert_equal(results[PANOPTIC], results[PANOPTIC_GOOD])
    assert reported[PANOPTIC_GOOD] == []
    reasons = {s["file_name"]: s["reason"] for s in reported[PANOPTIC]}
    assert reasons.keys() == {
        datasets[PANOPTIC][1]["file_name"],
        datasets[PANOPTIC][2]["file_name"],
    }
    assert "image file is truncated" in reasons[datasets[PANOPTIC][1]["file_name"]]
    assert re.search(
        r"panoptic png .*gone\.png of image .* not found",
        reasons[datasets[PANOPTIC][2]["file_name"]],
    )


def test_a_dataset_with_every_image_skipped_is_an_error_after_the_others(datasets, tmp_path):
    cfg = setup_cfg(TINY, [])
    done = []
    report = tmp_path / "skipped.json"
    with pytest.raises(NothingEvaluatedError, match=rf"no image of {HOPELESS} \(2 images\)"):
        evaluate_datasets(
            cfg,
            tiny_model(cfg),
            [HOPELESS, SEM_SEG_GOOD],
            on_result=lambda name, result: done.append(name),
            skipped_report=report,
        )
    assert done == [SEM_SEG_GOOD]
    saved = json.loads(report.read_text())
    assert saved[SEM_SEG_GOOD] == [] and len(saved[HOPELESS]) == 2


def test_during_training_a_hopeless_test_set_is_logged_not_raised(datasets, tmp_path, caplog):
    from train_net import Trainer

    cfg = setup_cfg(TINY, ["DATASETS.TEST", f"('{HOPELESS}', '{SEM_SEG_GOOD}')"])
    cfg.defrost()
    cfg.OUTPUT_DIR = str(tmp_path)
    with caplog.at_level(logging.ERROR, logger="maft_plus.evaluation.loop"):
        results = Trainer.test(cfg, tiny_model(cfg))  # what detectron2's EvalHook calls
    assert set(results) == {SEM_SEG_GOOD}
    assert any(f"no image of {HOPELESS}" in r.message for r in caplog.records)
    with pytest.raises(NothingEvaluatedError):
        Trainer.test(cfg, tiny_model(cfg), strict=True)  # --eval-only
