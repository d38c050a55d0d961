"""One distributed run from torchrun and from the SLURM recipe, equal to detectron2's --num-gpus;
the process-group timeout (--dist-timeout-s) reaches both launches; a lost process is named.

The runs train the tiny model for 3 iterations with 2 CPU processes (gloo). Every process runs one
thread (torchrun's default for several processes; set for the spawner too), so that the three
launches do the same arithmetic and their final weights can be compared exactly.
(tests/test_training_faults.py kills a process of such a run.)
"""

import os
import socket
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.spawn import ProcessExitedException, ProcessRaisedException

import maft_plus.launch as launch_module
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.launch import (
    LostProcessError,
    TorchrunPlace,
    launch_run,
    lost_process_message,
    torchrun_place,
)

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = (
    *("--config-file", str(REPO / "configs/tiny/maftp_tiny_train.yaml")),
    *("SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "4", "DATASETS.TEST", "()"),
    *("DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64"),
)
TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


def test_no_torchrun_variable_means_no_torchrun():
    assert torchrun_place({"PATH": "/bin"}) is None


def test_torchrun_variables_give_the_place():
    assert torchrun_place(TORCHRUN_ENV) == TorchrunPlace(
        rank=1, world_size=4, local_rank=1, local_world_size=2
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LOCAL_RANK": None}, "but not LOCAL_RANK"),
        ({"RANK": "one"}, "RANK='one': expected an integer"),
        ({"RANK": "4"}, "inconsistent torchrun environment"),
        ({"LOCAL_WORLD_SIZE": "3"}, "a multiple of LOCAL_WORLD_SIZE"),
    ],
)
def test_a_broken_torchrun_environment_is_named(change, message):
    environ = {**TORCHRUN_ENV, **change}
    environ = {k: v for k, v in environ.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        torchrun_place(environ)


def test_torchrun_with_num_gpus_is_refused(monkeypatch):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="drop --num-gpus"):
        launch_run(lambda args: pytest.fail("main must not run"), None, num_gpus=2)


def test_a_single_torchrun_process_runs_main_here(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert launch_run(lambda args: args * 2, 21, num_gpus=1) == 42


def parse(*argv: str):
    from train_net import argument_parser

    return argument_parser().parse_args(["--config-file", "x.yaml", *argv])


def test_dist_timeout_reaches_the_spawner(monkeypatch):
    from train_net import launch_main

    calls = []
    monkeypatch.setattr(launch_module, "launch", lambda *args, **kwargs: calls.append(kwargs))
    launch_main(parse("--num-gpus", "2", "--dist-timeout-s", "42.5"), main_function=print)
    launch_main(parse("--num-gpus", "2"), main_function=print)
    assert [c["timeout"] for c in calls] == [timedelta(seconds=42.5), timedelta(minutes=30)]


def test_dist_timeout_reaches_the_torchrun_process_group(monkeypatch):
    from train_net import launch_main

    for name, value in {**TORCHRUN_ENV, "RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    groups = []
    monkeypatch.setattr(launch_module.dist, "init_process_group", lambda **kw: groups.append(kw))
    monkeypatch.setattr(launch_module.dist, "destroy_process_group", lambda: groups.append("end"))
    monkeypatch.setattr(launch_module.dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(launch_module.comm, "create_local_process_group", lambda size: None)
    monkeypatch.setattr(launch_module.comm, "synchronize", lambda: None)
    monkeypatch.setattr(launch_module.torch.cuda, "is_available", lambda: False)
    assert launch_main(parse("--dist-timeout-s", "7"), main_function=lambda args: "trained")
    assert groups == [
        {
            "backend": "gloo",
            "init_method": "env://",
            "world_size": 4,
            "rank": 0,
            "timeout": timedelta(seconds=7),
        },
        "end",
    ]


def test_a_non_positive_dist_timeout_is_refused():
    from train_net import launch_main

    with pytest.raises(ValueError, match=r"--dist-timeout-s is 0.0; expected seconds > 0"):
        launch_main(parse("--dist-timeout-s", "0"), main_function=print)


@pytest.mark.parametrize(
    ("failure", "machine_rank", "message"),
    [
        (
            ProcessExitedException("", 1, 321, exit_code=-9, signal_name="SIGKILL"),
            0,
            r"rank 1 of 8 \(process 1 on machine 0, pid 321\) was killed by signal SIGKILL",
        ),
        (
            ProcessExitedException("", 3, 654, exit_code=2),
            1,
            r"rank 7 of 8 \(process 3 on machine 1, pid 654\) exited with code 2",
        ),
        (
            ProcessRaisedException("Traceback ...", 0, 987),
            1,
            r"rank 4 of 8 \(process 0 on machine 1, pid 987\) raised the exception above",
        ),
    ],
)
def test_a_failed_spawned_process_is_named_by_rank(monkeypatch, failure, machine_rank, message):
    def failing_launch(*args, **kwargs):
        raise failure

    monkeypatch.setattr(launch_module, "launch", failing_launch)
    with pytest.raises(LostProcessError, match=message) as info:
        launch_run(print, None, num_gpus=4, num_machines=2, machine_rank=machine_rank)
    assert info.value.__cause__ is failure
    assert str(info.value).endswith("continue from the last one with --resume")
    assert lost_process_message(
        failure, num_gpus=4, num_machines=2, machine_rank=machine_rank
    ) == str(info.value)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("datasets")
    write_synthetic_dataset(root / SYNTHETIC_FOLDER, num_train=8, num_val=4, image_size=64)
    return {
        **os.environ,
        "DETECTRON2_DATASETS": str(root),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def train(command: list[str], output: Path, environment: dict[str, str]) -> dict:
    """Run a training command to the end; return its final weights and its log."""
    process = subprocess.run(
        [*command, *TRAIN_ARGS, "OUTPUT_DIR", str(output)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stdout[-3000:]
    # One run of 2 processes (rank 0 logs), not 2 runs of 1 process each.
    assert process.stdout.count("World size: 2") == 1, process.stdout[-3000:]
    assert "World size: 1" not in process.stdout
    final = torch.load(output / "model_final.pth", weights_only=True)
    assert final["iteration"] == 2
    return final["model"]


@pytest.fixture(scope="module")
def spawned_weights(environment, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("spawned")
    return train([sys.executable, "train_net.py", "--num-gpus", "2"], output, environment)


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def test_torchrun_is_one_run_equal_to_num_gpus(spawned_weights, environment, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    weights = train([*torchrun, "--nproc_per_node", "2", "train_net.py"], tmp_path, environment)
    assert_same_weights(weights, spawned_weights)


def write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_slurm_recipe_runs_torchrun_as_one_run(spawned_weights, environment, tmp_path):
    """scripts/slurm_train.sh on one node, with SLURM's srun and scontrol played by two stubs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # srun runs its command once (one node, one task), after its own options.
    write_executable(
        bin_dir / "srun",
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
    )
    write_executable(bin_dir / "scontrol", "#!/usr/bin/env bash\necho 127.0.0.1\n")
    slurm = {
        "PATH": f"{bin_dir}{os.pathsep}{environment['PATH']}",
        "SLURM_JOB_NODELIST": "node001",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_GPUS_ON_NODE": "2",
        "MASTER_PORT": str(free_port()),
        "PYTHON": sys.executable,
    }
    weights = train(["bash", "scripts/slurm_train.sh"], tmp_path / "out", {**environment, **slurm})
    assert_same_weights(weights, spawned_weights)


def test_the_slurm_recipe_outside_slurm_says_how_to_submit(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    process = subprocess.run(
        ["bash", str(REPO / "scripts/slurm_train.sh"), "--config-file", "x.yaml"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 1
    assert "SLURM_JOB_NODELIST is not set: submit this script with sbatch" in process.stderr
