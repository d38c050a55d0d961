"""Resumable evaluation: killed in the middle of a benchmark, resumed, equal to a clean run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from maft_plus.checkpoint import MAFTPlusCheckpointer
from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_builtin_datasets
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.evaluation.loop import evaluate_datasets
from maft_plus.evaluation.resume import ResumeMismatchError
from maft_plus.modeling import MAFTPlus

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/tiny/maftp_tiny.yaml")
SEMANTIC, PANOPTIC = "maftp_synthetic_sem_seg_val", "maftp_synthetic_panoptic_val"
NUM_VAL = 12
OPTS = ("MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True", "INPUT.MIN_SIZE_TEST", "128")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    root = tmp / "datasets"
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=1, num_val=NUM_VAL, image_size=64)
    weights = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        MAFTPlusCheckpointer(MAFTPlus(setup_cfg(TINY)), save_dir=str(tmp)).save(f"tiny{seed}")
        weights[seed] = str(tmp / f"tiny{seed}.pth")
    return {"root": root, "weights": weights}


def arguments(setup, output: Path, *extra: str, weights: int = 0) -> list[str]:
    return [
        *("--config-file", TINY, "--datasets", SEMANTIC, PANOPTIC),
        *("--output-dir", str(output), "--save-every", "1", *extra),
        *("MODEL.WEIGHTS", setup["weights"][weights], *OPTS),
    ]


@pytest.fixture(scope="module")
def clean_results(setup, tmp_path_factory):
    """An uninterrupted run's results.json."""
    output = tmp_path_factory.mktemp("clean")
    run_tool(setup, arguments(setup, output))
    return json.loads((output / "results.json").read_text())


def run_tool(setup, argv: list[str]) -> subprocess.CompletedProcess:
    process = subprocess.run(
        [sys.executable, "tools/evaluate_benchmarks.py", *argv],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "DETECTRON2_DATASETS": str(setup["root"])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, (process.stdout + process.stderr)[-3000:]
    return process


def kill_during_panoptic(setup, output: Path) -> int:
    """Start the tool, SIGKILL it once the panoptic benchmark has saved some images; return how
    many of them its saved state holds."""
    process = subprocess.Popen(
        [sys.executable, "tools/evaluate_benchmarks.py", *arguments(setup, output)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "DETECTRON2_DATASETS": str(setup["root"])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = output / "resume" / PANOPTIC / "progress_rank0_of_1.pt"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if state.is_file() and torch.load(state, weights_only=True)["images_done"] >= 2:
                break
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = torch.load(state, weights_only=True)["images_done"]
    assert 2 <= done < NUM_VAL, done
    return done


class Interrupted(Exception):
    pass


def evaluate(setup, output: Path | None, *, resume: bool = False, stop_after: int | None = None):
    """evaluate_datasets in this process: (results, model calls); ``stop_after`` N: raise in the
    N+1-th panoptic image."""
    cfg = setup_cfg(TINY, ["MODEL.WEIGHTS", setup["weights"][0], *OPTS])
    model = MAFTPlus(cfg).eval()
    MAFTPlusCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    calls = []

    def interrupt(module, inputs):  # the semantic benchmark takes the first NUM_VAL calls
        calls.append(1)
        if stop_after is not None and len(calls) > NUM_VAL + stop_after:
            raise Interrupted

    model.register_forward_pre_hook(interrupt)
    register_builtin_datasets(setup["root"])
    results = evaluate_datasets(
        cfg,
        model,
        [SEMANTIC, PANOPTIC],
        resume_dir=None if output is None else output / "resume",
        resume=resume,
        save_every=1,
    )
    return results, len(calls)


def test_an_interrupted_evaluation_resumes_to_the_same_numbers(setup, tmp_path):
    """In-process: the second benchmark stops after 5 images (as if killed: the state on disk is
    what a kill leaves), and the resumed run gives the uninterrupted run's numbers."""
    clean, _ = evaluate(setup, None)
    with pytest.raises(Interrupted):
        evaluate(setup, tmp_path, stop_after=5)
    saved = torch.load(tmp_path / "resume" / PANOPTIC / "progress_rank0_of_1.pt", weights_only=True)
    assert saved["images_done"] == 5
    assert (tmp_path / "resume" / SEMANTIC / "finished.pt").is_file()
    resumed, calls = evaluate(setup, tmp_path, resume=True)
    assert resumed == clean
    assert calls == NUM_VAL - 5  # the semantic benchmark read back, the panoptic one continued


@pytest.mark.slow
def test_a_killed_evaluation_resumes_to_the_same_numbers(setup, clean_results, tmp_path):
    output = tmp_path / "killed"
    done = kill_during_panoptic(setup, output)
    assert (output / "resume" / SEMANTIC / "finished.pt").is_file()
    resumed = run_tool(setup, arguments(setup, output, "--resume"))
    log = resumed.stdout + resumed.stderr
    assert f"{SEMANTIC}: finished before, results read from" in log
    assert f"resuming after {done} images of this process's shard" in log
    assert f"{PANOPTIC}: inference on {NUM_VAL - done} batches" in log
    assert json.loads((output / "results.json").read_text()) == clean_results
    assert not list((output / "resume").glob("*/progress_*.pt"))  # finished: progress dropped

    # Without --resume, the saved state is discarded and both benchmarks are computed again.
    again = run_tool(setup, arguments(setup, output))
    assert "finished before" not in again.stdout + again.stderr
    assert json.loads((output / "results.json").read_text()) == clean_results


@pytest.mark.parametrize(
    ("options", "opts", "weights", "named"),
    [
        ((), (), 1, "checkpoint"),
        ((), ("MODEL.MAFT_PLUS.TEST.OBJECT_MASK_THRESHOLD", "0.5"), 0, "config"),
        (("--vocabulary-file", "RENAMED", "--rename-classes"), (), 0, "vocabulary"),
    ],
)
def test_a_state_of_another_run_is_refused(
    setup, tmp_path, monkeypatch, options, opts, weights, named
):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(setup["root"]))
    tool = load_script("tools/evaluate_benchmarks.py")
    output = tmp_path / "out"
    argv = [*("--config-file", TINY, "--datasets", SEMANTIC, "--output-dir", str(output))]
    tool.main([*argv, "MODEL.WEIGHTS", setup["weights"][0]])
    results = (output / "results.json").read_text()
    renamed = tmp_path / "renamed.txt"  # the synthetic classes under other names
    renamed.write_text("".join(f"{i}:class {i}\n" for i in range(1, 8)))
    options = [f"{SEMANTIC}={renamed}" if o == "RENAMED" else o for o in options]
    with pytest.raises(ResumeMismatchError, match=f"made with another .*{named}.* not mixed in"):
        tool.main([*argv, "--resume", *options, "MODEL.WEIGHTS", setup["weights"][weights], *opts])
    assert (output / "results.json").read_text() == results  # nothing lost
