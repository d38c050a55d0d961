"""The README's first command, scripts/quickstart.sh, end to end (slow: a few minutes)."""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_trains_evaluates_and_draws(tmp_path):
    env = {
        **os.environ,
        "DETECTRON2_DATASETS": str(tmp_path / "datasets"),
        "MAFT_QUICKSTART_OUTPUT": str(tmp_path / "out"),
    }
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    metrics = re.findall(r"copypaste: ([0-9.]+),", log)  # mIoU of each evaluation
    miou = float(metrics[-1])
    assert miou > 40, log[-3000:]
    for stem in ("00000", "00001"):
        overlay = np.asarray(Image.open(tmp_path / "out" / "demo" / f"{stem}_overlay.png"))
        assert overlay.ndim == 3 and overlay.shape[2] == 3
        labels = np.asarray(Image.open(tmp_path / "out" / "demo" / f"{stem}_labels.png"))
        assert len(np.unique(labels)) >= 2  # ground and at least one shape
