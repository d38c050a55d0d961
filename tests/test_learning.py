"""The tiny model learns: a short train_net.py run on the synthetic set, in the default suite.

The loss at least halves and the validation mIoU ends far above chance (a uniformly random
labelling of the 7 synthetic classes scores about 5.5). The full quickstart recipe is the slow
``test_tiny_recipe_learns``. The trained model then checks the bfloat16 fast path against float32
(``tools/bf16_agreement.py``): random weights cannot, their class scores are near ties.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny" / "maftp_tiny_train.yaml"
CHANCE_MIOU = 5.5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(train_net.py's log, the synthetic set's root, the output folder) of one short run."""
    tmp_path = tmp_path_factory.mktemp("learning")
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=16, num_val=8, image_size=64)
    command = [
        sys.executable,
        str(REPO / "train_net.py"),
        *("--config-file", str(CONFIG)),
        *("OUTPUT_DIR", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0"),
        *("INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64"),
        *("SOLVER.MAX_ITER", "240", "SOLVER.CHECKPOINT_PERIOD", "100000"),
        *("TEST.EVAL_PERIOD", "0"),  # evaluated once, at the end
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DETECTRON2_DATASETS": str(root)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log, root / SYNTHETIC_FOLDER, tmp_path / "out"


def test_tiny_model_learns_the_synthetic_set(trained):
    log = trained[0]
    losses = [float(v) for v in re.findall(r"total_loss: ([0-9.]+)", log)]
    assert len(losses) >= 5, log[-3000:]
    assert losses[-1] <= losses[0] / 2, losses
    miou = float(re.findall(r"copypaste: ([0-9.]+),", log)[-1])
    assert miou > 5 * CHANCE_MIOU, log[-3000:]


def test_the_bf16_fast_path_agrees_with_fp32_on_the_trained_model(trained):
    _, synthetic_root, out = trained
    names = register_synthetic(synthetic_root, prefix="maftp_bf16check")
    try:
        report = load_script("tools/bf16_agreement.py").main(
            [
                *("--config-file", str(CONFIG), "--dataset", "maftp_bf16check_sem_seg_val"),
                *("--output", str(out / "bf16.json")),
                *("MODEL.WEIGHTS", str(out / "model_final.pth"), "INPUT.MIN_SIZE_TEST", "64"),
            ]
        )
    finally:
        unregister(names)
    assert json.loads((out / "bf16.json").read_text()) == report
    assert report["images"] == 8 and report["pixels"] == 8 * 64 * 64
    assert report["mIoU_fp32"] > 5 * CHANCE_MIOU  # a model that decides, not near-ties
    assert report["same_label"] >= 0.995, report
    assert abs(report["mIoU_difference"]) <= 0.3, report
