"""The tiny model learns: a short train_net.py run on the synthetic set, in the default suite.

The loss at least halves and the validation mIoU ends far above chance (a uniformly random
labelling of the 7 synthetic classes scores about 5.5). The full quickstart recipe is the slow
``test_tiny_recipe_learns``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
CHANCE_MIOU = 5.5


def test_tiny_model_learns_the_synthetic_set(tmp_path):
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=16, num_val=8, image_size=64)
    command = [
        sys.executable,
        str(REPO / "train_net.py"),
        *("--config-file", str(REPO / "configs" / "tiny" / "maftp_tiny_train.yaml")),
        *("OUTPUT_DIR", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0"),
        *("INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64"),
        *("SOLVER.MAX_ITER", "240", "SOLVER.CHECKPOINT_PERIOD", "100000"),
        *("TEST.EVAL_PERIOD", "0"),  # evaluated once, at the end
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DETECTRON2_DATASETS": str(root)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    losses = [float(v) for v in re.findall(r"total_loss: ([0-9.]+)", log)]
    assert len(losses) >= 5, log[-3000:]
    assert losses[-1] <= losses[0] / 2, losses
    miou = float(re.findall(r"copypaste: ([0-9.]+),", log)[-1])
    assert miou > 5 * CHANCE_MIOU, log[-3000:]
