"""train_net's evaluation: several test sets, each with its own vocabulary; panoptic metrics."""

import re
import time

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.evaluation.loop import evaluate_datasets
from maft_plus.modeling import MAFTPlus

TINY = "configs/tiny/maftp_tiny.yaml"
RENAMED = "maftp_renamed_sem_seg_val"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_train=2, num_val=3, image_size=64)
    names = register_synthetic(root, prefix="maftp_evaltest")
    # The same images under another vocabulary: different class names, same label ids.
    DatasetCatalog.register(RENAMED, DatasetCatalog.get("maftp_evaltest_sem_seg_val").copy)
    source = MetadataCatalog.get("maftp_evaltest_sem_seg_val")
    MetadataCatalog.get(RENAMED).set(
        stuff_classes=[f"shape number {k}" for k in range(len(source.stuff_classes))],
        ignore_label=255,
        evaluator_type="sem_seg",
    )
    yield names
    unregister([*names, RENAMED])


def test_each_test_set_is_evaluated_with_its_own_vocabulary(synthetic, tmp_path):
    from train_net import Trainer

    cfg = setup_cfg(
        TINY,
        [
            *("DATASETS.TEST", f"('maftp_evaltest_sem_seg_val', '{RENAMED}')"),
            *("DATASETS.TRAIN", "('maftp_evaltest_sem_seg_train',)", "OUTPUT_DIR", str(tmp_path)),
        ],
    )
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(["training vocabulary"])
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.vocabulary.class_names[0]))
    results = Trainer.test(cfg, model)
    assert set(results) == {"maftp_evaltest_sem_seg_val", RENAMED}
    assert all("mIoU" in r["sem_seg"] for r in results.values())
    assert seen == ["circle"] * 3 + ["shape number 0"] * 3
    assert model.vocabulary.class_names == ("training vocabulary",)  # restored afterwards


def test_panoptic_sets_get_pq_and_miou(synthetic, tmp_path):
    from train_net import Trainer

    cfg = setup_cfg(
        TINY,
        [
            *("DATASETS.TEST", "('maftp_evaltest_panoptic_val',)", "OUTPUT_DIR", str(tmp_path)),
            *("MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True"),
        ],
    )
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(["x"])
    results = Trainer.test(cfg, model)["maftp_evaltest_panoptic_val"]
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(results["panoptic_seg"])
    assert "mIoU" in results["sem_seg"]


def test_amp_on_cpu_is_refused_up_front(synthetic, tmp_path):
    from train_net import Trainer

    cfg = setup_cfg(
        TINY,
        [
            *("DATASETS.TRAIN", "('maftp_evaltest_sem_seg_train',)", "OUTPUT_DIR", str(tmp_path)),
            *("SOLVER.AMP.ENABLED", "True"),
        ],
    )
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED needs CUDA"):
        Trainer(cfg)


def test_evaluation_is_deterministic(synthetic, tmp_path):
    from train_net import Trainer

    cfg = setup_cfg(
        TINY,
        [*("DATASETS.TEST", "('maftp_evaltest_sem_seg_val',)", "OUTPUT_DIR", str(tmp_path))],
    )
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(["x"])
    first = Trainer.test(cfg, model)
    second = Trainer.test(cfg, model)
    np.testing.assert_equal(second, first)  # NaN (class absent) equals NaN here


def test_the_loop_reports_what_it_adds_to_the_model(synthetic, tmp_path, caplog):
    """The throughput line: images per second end to end and what the loop adds to the model's
    own forward time, which a deliberately slow model makes large and known."""
    cfg = setup_cfg(TINY, ["OUTPUT_DIR", str(tmp_path)])
    model = MAFTPlus(cfg).eval()
    model.register_forward_pre_hook(lambda m, args: time.sleep(0.2))
    with caplog.at_level("INFO", logger="maft_plus.evaluation.loop"):
        evaluate_datasets(cfg, model, ["maftp_evaltest_sem_seg_val"])
    line = next(r.getMessage() for r in caplog.records if "images/s end to end" in r.getMessage())
    found = re.search(r"took ([\d.]+) of ([\d.]+) s, .* add (\d+)%", line)
    model_seconds, total_seconds, added = (float(v) for v in found.groups())
    assert 3 * 0.2 <= model_seconds <= total_seconds
    assert 0 <= added < 100 * total_seconds / model_seconds  # consistent with the two times
