"""train_net.py end to end on the synthetic dataset: train, kill and resume, DDP, evaluation."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maft_plus.data.datasets import register_builtin_datasets
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = str(REPO / "configs" / "tiny" / "maftp_tiny_train.yaml")


@pytest.fixture
def datasets_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=8, num_val=4, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root


def train_net(*args: str, output: Path, **popen) -> subprocess.Popen:
    """Start train_net.py on the tiny config with small-run overrides."""
    command = [
        sys.executable,
        str(REPO / "train_net.py"),
        "--config-file",
        TRAIN_CONFIG,
        *args,
        "OUTPUT_DIR",
        str(output),
        "DATALOADER.NUM_WORKERS",
        "0",
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MIN_SIZE_TEST",
        "64",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, text=True, **popen)


def run(*args: str, output: Path, timeout: int = 300) -> str:
    process = train_net(*args, output=output, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, log[-3000:]
    return log


def wait_for_checkpoint(output: Path, name: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = output / "last_checkpoint"
        if last.exists() and last.read_text().strip() == name:
            return
        assert process.poll() is None, "training ended before the checkpoint was written"
        time.sleep(0.05)
    raise TimeoutError(f"{name} was not written within {timeout} s")


def test_killed_run_resumes_from_its_last_checkpoint(datasets_root, tmp_path):
    from train_net import Trainer, setup_cfg

    output = tmp_path / "run"
    opts = ("SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "10", "DATASETS.TEST", "()")
    process = train_net(*opts, output=output, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(output, "model_0000019.pth", process, timeout=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = torch.load(output / "model_0000019.pth", weights_only=True)
    assert saved["iteration"] == 19

    register_builtin_datasets()
    cfg = setup_cfg(
        TRAIN_CONFIG,
        [
            *opts,
            *("OUTPUT_DIR", str(output), "DATALOADER.NUM_WORKERS", "0"),
            *("INPUT.MIN_SIZE_TRAIN", "(64,)"),
        ],
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 20
    model_state = trainer.model.state_dict()
    for key, value in saved["model"].items():
        torch.testing.assert_close(model_state[key], value, rtol=0, atol=0, msg=key)
    saved_optimizer = saved["trainer"]["_trainer"]["optimizer"]["state"]
    optimizer_state = trainer.optimizer.state_dict()["state"]
    assert len(optimizer_state) == len(saved_optimizer) > 0
    for index, state in saved_optimizer.items():
        for name, value in state.items():
            torch.testing.assert_close(optimizer_state[index][name], value, rtol=0, atol=0)
    assert trainer.scheduler.last_epoch == saved["trainer"]["hooks"]["LRScheduler"]["last_epoch"]

    trainer.train()
    assert trainer.iter == 40  # detectron2 counts one past the last iteration (39)
    assert torch.load(output / "model_final.pth", weights_only=True)["iteration"] == 39


def test_two_process_ddp_trains_on_cpu(datasets_root, tmp_path):
    output = tmp_path / "ddp"
    log = run(
        "--num-gpus",
        "2",
        *("SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4", "DATASETS.TEST", "()"),
        output=output,
    )
    assert "world size: 2" in log.lower() or "Rank of current process: 1" in log
    final = torch.load(output / "model_final.pth", weights_only=True)
    assert final["iteration"] == 2
    assert not any(k.startswith(("module.", "teacher.")) for k in final["model"])


def test_eval_only_reports_miou_of_a_checkpoint(datasets_root, tmp_path):
    output = tmp_path / "train"
    run("SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()", output=output)
    log = run(
        "--eval-only",
        *("MODEL.WEIGHTS", str(output / "model_final.pth")),
        output=tmp_path / "eval",
    )
    assert "copypaste: mIoU,mIoU_legacy,fwIoU,mACC,pACC" in log


def test_an_eval_only_run_resumes_from_its_saved_state(datasets_root, tmp_path):
    output = tmp_path / "train"
    run("SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", output=output)
    weights = ("MODEL.WEIGHTS", str(output / "model_final.pth"))
    first = run("--eval-only", *weights, output=tmp_path / "eval")
    assert (tmp_path / "eval/inference/resume/maftp_synthetic_sem_seg_val/finished.pt").is_file()
    again = run("--eval-only", "--resume", *weights, output=tmp_path / "eval")
    assert "maftp_synthetic_sem_seg_val: finished before, results read from" in again
    numbers = [line.split("copypaste: ")[1] for line in first.splitlines() if "copypaste: " in line]
    assert numbers == [
        line.split("copypaste: ")[1] for line in again.splitlines() if "copypaste: " in line
    ]


def test_a_missing_dataset_names_the_prepare_script(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "empty"))
    process = train_net(output=tmp_path / "out", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "python datasets/prepare_synthetic.py" in log
    assert str(tmp_path / "empty" / SYNTHETIC_FOLDER) in log


@pytest.mark.slow
def test_tiny_recipe_learns(datasets_root, tmp_path):
    """The README's tiny run: loss falls and mIoU ends far above chance (~5.5 for 7 classes)."""
    write_synthetic_dataset(datasets_root / SYNTHETIC_FOLDER)  # the full default size
    log = run(output=tmp_path / "tiny", timeout=900)
    results = [line for line in log.splitlines() if "copypaste: " in line and "," in line]
    miou = float(results[-1].split("copypaste: ")[1].split(",")[0])
    assert miou > 40, log[-3000:]
