"""Start one distributed run from detectron2's ``--num-gpus`` spawner or from ``torchrun``.

``python train_net.py --num-gpus N`` spawns N processes itself (detectron2's ``launch``).
``torchrun --nproc_per_node N train_net.py`` starts the N processes from outside and tells each its
place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``); every process then joins the same process group through the
``env://`` rendezvous, so the N processes are one run, not N runs writing to one folder. The SLURM
recipe (``scripts/slurm_train.sh``) runs torchrun once per node and so goes through the same path.

The backend is NCCL with CUDA, gloo without (CPU processes), as under detectron2's spawner.

When a process dies (killed, out of memory, a crash), the run ends with an error that names its
rank: under ``--num-gpus``, torch's ``start_processes`` stops the other processes at once and
:func:`launch_run` raises :class:`LostProcessError` naming the rank; torchrun stops the group
itself and prints the rank as the "Root Cause". ``timeout`` bounds what neither launcher can see, a
collective waiting on a process that is stuck or on another machine: it is the process group's
timeout under both launches (``train_net.py --dist-timeout-s``).
"""

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from detectron2.engine import launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm
from torch.multiprocessing.spawn import (
    ProcessException,
    ProcessExitedException,
    ProcessRaisedException,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LostProcessError",
    "TorchrunPlace",
    "launch_run",
    "lost_process_message",
    "torchrun_place",
]

# What torchrun (torch.distributed.run) sets in every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class LostProcessError(RuntimeError):
    """A process of a ``--num-gpus`` run ended abnormally; the message names its rank."""


@dataclass(frozen=True)
class TorchrunPlace:
    """A process's place in a torchrun launch."""

    rank: int  # over all nodes
    world_size: int  # processes over all nodes
    local_rank: int  # on this node; the CUDA device it uses
    local_world_size: int  # processes on this node


def torchrun_place(environ: Mapping[str, str] | None = None) -> TorchrunPlace | None:
    """This process's place when torchrun started it, None otherwise (no torchrun variable set).

    Raises:
        ValueError: some torchrun variables are set and others are not, or one is not an integer
            or out of range (a launcher that sets them by hand made a mistake).
    """
    environ = os.environ if environ is None else environ
    present = [name for name in TORCHRUN_VARIABLES if name in environ]
    if not present:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise ValueError(
            f"the environment sets {', '.join(present)} but not {', '.join(missing)}; start the "
            "processes with torchrun (torch.distributed.run), which sets all of "
            f"{', '.join(TORCHRUN_VARIABLES)}"
        )
    values = {}
    for name in TORCHRUN_VARIABLES:
        text = environ[name]
        if not text.strip().isdigit():
            raise ValueError(f"environment variable {name}={text!r}: expected an integer >= 0")
        values[name] = int(text)
    place = TorchrunPlace(
        rank=values["RANK"],
        world_size=values["WORLD_SIZE"],
        local_rank=values["LOCAL_RANK"],
        local_world_size=values["LOCAL_WORLD_SIZE"],
    )
    if not (
        0 <= place.rank < place.world_size
        and 0 <= place.local_rank < place.local_world_size <= place.world_size
        and place.world_size % place.local_world_size == 0
    ):
        raise ValueError(
            f"inconsistent torchrun environment {values}: expected RANK < WORLD_SIZE, LOCAL_RANK "
            "< LOCAL_WORLD_SIZE and WORLD_SIZE a multiple of LOCAL_WORLD_SIZE (the same number of "
            "processes on every node)"
        )
    return place


def launch_run(
    main: Callable[..., Any],
    args: Any,
    *,
    num_gpus: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``main(args)`` in every process of a run started by torchrun or by ``--num-gpus``.

    Under torchrun, ``num_gpus`` must stay 1 (the processes are torchrun's, not ours) and the
    ``num_machines``/``machine_rank``/``dist_url`` of detectron2's spawner do not apply. Otherwise
    detectron2's ``launch`` spawns ``num_gpus`` processes per machine (a single one runs ``main``
    in this process).

    Args:
        timeout: the process group's timeout: how long a collective waits for a process that
            neither dies nor answers before it fails.

    Returns:
        What ``main`` returns, under torchrun and in a single process (detectron2's spawner does
        not return its children's results).

    Raises:
        LostProcessError: under ``--num-gpus``, a process died or failed (the others are stopped).
    """
    place = torchrun_place()
    if place is None:
        try:
            return launch(
                main,
                num_gpus,
                num_machines=num_machines,
                machine_rank=machine_rank,
                dist_url=dist_url,
                args=(args,),
                timeout=timeout,
            )
        except ProcessException as exc:  # start_processes has stopped the other processes
            message = lost_process_message(
                exc, num_gpus=num_gpus, num_machines=num_machines, machine_rank=machine_rank
            )
            raise LostProcessError(message) from exc
    if num_gpus != 1 or num_machines != 1:
        raise ValueError(
            f"started by torchrun ({place.world_size} processes) with --num-gpus {num_gpus} "
            f"--num-machines {num_machines}: torchrun already starts the processes; drop "
            "--num-gpus/--num-machines and give torchrun --nproc_per_node/--nnodes instead"
        )
    if place.world_size == 1:
        return main(args)
    _join_torchrun_group(place, timeout)
    try:
        return main(args)
    finally:
        dist.destroy_process_group()


def lost_process_message(
    exc: ProcessException, *, num_gpus: int, num_machines: int, machine_rank: int
) -> str:
    """What went wrong, by rank, from the exception of torch's ``start_processes`` (which names
    the process by its index on this machine only)."""
    rank = machine_rank * num_gpus + exc.error_index
    who = (
        f"rank {rank} of {num_gpus * num_machines} (process {exc.error_index} on machine "
        f"{machine_rank}, pid {exc.error_pid})"
    )
    if isinstance(exc, ProcessExitedException) and exc.signal_name:
        what = f"was killed by signal {exc.signal_name}"
    elif isinstance(exc, ProcessExitedException):
        what = f"exited with code {exc.exit_code}"
    elif isinstance(exc, ProcessRaisedException):
        what = "raised the exception above"
    else:
        what = f"failed: {exc}"
    return (
        f"training process {who} {what}; the other processes of the run were stopped. The "
        "checkpoints written so far are kept: continue from the last one with --resume"
    )


def _join_torchrun_group(place: TorchrunPlace, timeout: timedelta) -> None:
    """Join the env:// process group and the per-node group, as detectron2's workers do."""
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        if place.local_world_size > torch.cuda.device_count():
            raise RuntimeError(
                f"torchrun starts {place.local_world_size} processes on this node, but it has "
                f"{torch.cuda.device_count()} CUDA devices: give --nproc_per_node at most that"
            )
        torch.cuda.set_device(place.local_rank)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo",
        init_method="env://",
        world_size=place.world_size,
        rank=place.rank,
        timeout=timeout,
    )
    comm.create_local_process_group(place.local_world_size)
    comm.synchronize()
    logger.info(
        "torchrun: process %d of %d (local %d of %d), backend %s",
        place.rank,
        place.world_size,
        place.local_rank,
        place.local_world_size,
        dist.get_backend(),
    )
