"""Training faults: a non-finite loss stops the run by name; saving is atomic; a killed process
ends a 2-process run at once, naming its rank, and --resume continues; bad training samples are
skipped, logged and counted, and stop the run only past the configured share."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from maft_plus.checkpoint import MAFTPlusCheckpointer
from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_builtin_datasets, register_synthetic, unregister
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.skipped_samples import SkippedSamplesError
from maft_plus.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = str(REPO / "configs" / "tiny" / "maftp_tiny_train.yaml")


@pytest.fixture
def synthetic(tmp_path):
    write_synthetic_dataset(tmp_path / "synthetic", num_train=4, num_val=1, image_size=64)
    names = register_synthetic(tmp_path / "synthetic", prefix="maftp_faults")
    yield names
    unregister(names)


def test_a_non_finite_loss_stops_with_its_name_and_keeps_the_last_checkpoint(synthetic, tmp_path):
    from train_net import Trainer

    output = tmp_path / "run"
    cfg = setup_cfg(
        TRAIN_CONFIG,
        [
            *("DATASETS.TRAIN", "('maftp_faults_sem_seg_train',)", "DATASETS.TEST", "()"),
            *("SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2"),
            *("OUTPUT_DIR", str(output), "INPUT.MIN_SIZE_TRAIN", "(64,)"),
        ],
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    objective = trainer.model.objective
    forward, calls = objective.forward, []

    def poisoned(*args, **kwargs):
        losses = forward(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # iteration 3
            losses["loss_ma"] = losses["loss_ma"] * float("nan")
        return losses

    objective.forward = poisoned
    with pytest.raises(FloatingPointError, match=r"iteration 3: loss_ma=nan"):
        trainer.train()
    assert (output / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (output / "model_0000003.pth").exists()
    saved = torch.load(output / "model_0000001.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    checkpointer = MAFTPlusCheckpointer(model, str(tmp_path))
    checkpointer.save("model_a")
    good = (tmp_path / "model_a.pth").read_bytes()

    def crashing_save(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save("model_b")
    assert (tmp_path / "model_a.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_a.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_a.pth"]


@pytest.fixture
def damaged(tmp_path) -> dict[str, str]:
    """A synthetic set of 8 training images, 3 of them bad; {bad image file: expected reason}."""
    root = tmp_path / "damaged"
    write_synthetic_dataset(root, num_train=8, num_val=1, image_size=64)
    images, labels = root / "images" / "train", root / "annotations" / "train"
    (images / "00001.jpg").write_bytes(b"not a jpeg")  # corrupt
    truncated = images / "00003.jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with Image.open(labels / "00005.png") as label:
        label.crop((0, 0, 48, 48)).save(labels / "00005.png")  # the wrong size
    names = register_synthetic(root, prefix="maftp_damaged")
    yield {
        str(images / "00001.jpg"): "cannot identify image file",
        str(images / "00003.jpg"): "image file is truncated",
        str(images / "00005.jpg"): f"label {labels / '00005.png'} is 48x48 (WxH) but its image",
    }
    unregister(names)


def damaged_run_config(output: Path, *opts: str):
    return setup_cfg(
        TRAIN_CONFIG,
        [
            *("DATASETS.TRAIN", "('maftp_damaged_sem_seg_train',)", "DATASETS.TEST", "()"),
            *("OUTPUT_DIR", str(output), "INPUT.MIN_SIZE_TRAIN", "(64,)"),
            *opts,
        ],
    )


def test_bad_training_samples_are_skipped_logged_and_counted(damaged, tmp_path, caplog):
    """3 bad samples of 8, read by 2 DataLoader workers: each is logged once, the run finishes
    and metrics.json holds the number of samples skipped."""
    from train_net import Trainer

    output = tmp_path / "run"
    cfg = damaged_run_config(
        output,
        *("SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "100"),
        *("DATALOADER.NUM_WORKERS", "2", "DATALOADER.MAX_SKIPPED_FRACTION", "0.75"),
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    with caplog.at_level(logging.WARNING, logger="maft_plus.data.skipped_samples"):
        trainer.train()
    assert torch.load(output / "model_final.pth", weights_only=True)["iteration"] == 5

    logged = [r.getMessage() for r in caplog.records if "skipped training sample" in r.getMessage()]
    assert len(logged) == 3, logged  # each bad file once, however often it was met
    for image_file, reason in damaged.items():
        assert any(f"skipped training sample {image_file}: " in m and reason in m for m in logged)

    skipped, fraction = last_metric(output, "data/skipped_samples", "data/skipped_fraction")
    assert skipped >= 3  # every bad file was met at least once in 6 batches of 4 (3 epochs)
    assert round(skipped / fraction) == 24 + skipped  # samples met: 24 trained on, and skipped


def last_metric(output: Path, *keys: str) -> list[float]:
    """The last values of ``keys`` in OUTPUT_DIR/metrics.json (detectron2's JSONWriter)."""
    records = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    return [[r[key] for r in records if key in r][-1] for key in keys]


def test_too_many_bad_samples_stop_the_run_naming_them(damaged, tmp_path):
    from train_net import Trainer

    output = tmp_path / "run"
    cfg = damaged_run_config(
        output,
        *("SOLVER.MAX_ITER", "50", "SOLVER.CHECKPOINT_PERIOD", "1"),
        *("DATALOADER.NUM_WORKERS", "0", "DATALOADER.MAX_SKIPPED_FRACTION", "0.1"),
        *("DATALOADER.MIN_SKIPPED_TO_STOP", "3"),
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    with pytest.raises(
        SkippedSamplesError, match=r"more than DATALOADER.MAX_SKIPPED_FRACTION"
    ) as info:
        trainer.train()
    named = [line.strip() for line in str(info.value).splitlines() if line.startswith("  ")]
    assert len(named) >= 3, str(info.value)  # the last bad files, with their reasons
    for line in named:
        image_file, reason = line.split(": ", 1)
        assert damaged[image_file] in reason, line
    (skipped,) = last_metric(output, "data/skipped_samples")  # written as the run stopped
    assert skipped == len(named)
    assert 0 < trainer.iter < 50
    # the iteration before the stop was checkpointed and stays the last one
    assert (output / "last_checkpoint").read_text() == f"model_{trainer.iter - 1:07d}.pth"


# The two launches of a 2-process run (gloo on CPU), each process writing its pid at start-up.
PID_WRITING_TRAIN_NET = str(REPO / "tests" / "train_net_with_pid_files.py")
LAUNCHES = {
    "num-gpus": [sys.executable, PID_WRITING_TRAIN_NET, "--num-gpus", "2"],
    "torchrun": [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        PID_WRITING_TRAIN_NET,
    ],
}
# How each launch names the killed rank: our LostProcessError under --num-gpus (torch says
# "process 1", its index on the machine); torchrun's failure summary under torchrun.
LOST_RANK_MESSAGES = {
    "num-gpus": r"LostProcessError: training process rank 1 of 2 \(process 1 on machine 0, "
    r"pid (?P<pid>\d+)\) was killed by signal SIGKILL; the other processes of the run were stopped",
    "torchrun": r"rank\s*: 1 \(local_rank: 1\)\n\s*exitcode\s*: -9 \(pid: (?P<pid>\d+)\)",
}
DIST_TIMEOUT_S = 20  # the process-group timeout; a dead process must end the run well before


def wait_until(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("launch", LAUNCHES)
def test_a_killed_process_ends_the_run_naming_its_rank_and_resume_continues(
    launch, tmp_path, monkeypatch
):
    from train_net import Trainer

    datasets = tmp_path / "datasets"
    write_synthetic_dataset(datasets / SYNTHETIC_FOLDER, num_train=8, num_val=1, image_size=64)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    output, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    opts = [
        *("SOLVER.IMS_PER_BATCH", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"),
        *("DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)"),
        *("OUTPUT_DIR", str(output)),
    ]
    command = [
        *LAUNCHES[launch],
        *("--dist-timeout-s", str(DIST_TIMEOUT_S), "--config-file", TRAIN_CONFIG),
        *("SOLVER.MAX_ITER", "1000", *opts),
    ]
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "MAFT_PLUS_PID_DIR": str(pids),
    }
    log_file = tmp_path / "log.txt"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            last = output / "last_checkpoint"
            wait_until(
                lambda: last.exists() and last.read_text() == "model_0000003.pth",
                process,
                timeout=240,
                what="checkpoint of iteration 3",
            )
            rank0, rank1 = (int((pids / f"rank{r}").read_text()) for r in (0, 1))
            os.kill(rank1, signal.SIGKILL)
            killed_at = time.monotonic()
            process.wait(timeout=2 * DIST_TIMEOUT_S)
            took = time.monotonic() - killed_at
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log_file.read_text()
    assert process.returncode != 0, text[-3000:]
    assert took < DIST_TIMEOUT_S, f"the run took {took:.1f} s to end"
    match = re.search(LOST_RANK_MESSAGES[launch], text)
    assert match and int(match["pid"]) == rank1, text[-3000:]
    assert not is_running(rank0)  # the surviving process was stopped, not left behind

    # --resume, here in one process: from the last checkpoint written before the kill
    saved = torch.load(output / last.read_text(), weights_only=True)
    register_builtin_datasets()
    end = saved["iteration"] + 3
    cfg = setup_cfg(TRAIN_CONFIG, ["SOLVER.MAX_ITER", str(end), *opts])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == saved["iteration"] + 1 >= 4
    trainer.train()
    assert torch.load(output / "model_final.pth", weights_only=True)["iteration"] == end - 1
