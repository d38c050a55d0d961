"""Resumable evaluation: one dataset's progress saved as it goes, read back after a kill.

Under ``resume_dir/<dataset>/`` each process saves, atomically and every ``save_every`` images,
what its evaluators have accumulated so far (the confusion matrices, the panoptic predictions, the
skipped files) and how many images of its shard are done: ``progress_rank<r>_of_<w>.pt``. When the
dataset is finished, the main process writes its results to ``finished.pt`` and the progress
files are removed. A resumed evaluation reads a finished dataset back instead of recomputing it,
and continues an unfinished one from each process's saved point: the sums are the same, so the
metrics equal those of an uninterrupted run exactly.

Every file carries the fingerprint of what it was computed with: the checkpoint (a digest of the
model's weights), the config, the vocabulary, the dataset (name and size) and the number of
processes. A file whose fingerprint differs is refused with :class:`ResumeMismatchError` naming
what changed, never mixed in. Files are written with ``torch.save`` and read with
``weights_only=True`` (tensors, numbers, strings and bytes only).
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from ..files import write_atomically

logger = logging.getLogger(__name__)

FINISHED_FILE = "finished.pt"
# Config keys that do not change what an evaluation computes.
IGNORED_CONFIG_KEYS = ("OUTPUT_DIR", "MODEL.WEIGHTS", "DATALOADER.NUM_WORKERS")


class ResumeMismatchError(ValueError):
    """Saved evaluation state made with another checkpoint, config, vocabulary or dataset."""


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer of ``model`` (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def config_digest(cfg: CfgNode) -> str:
    """sha256 of the config without the keys of ``IGNORED_CONFIG_KEYS``."""
    cfg = cfg.clone()
    cfg.defrost()
    for key in IGNORED_CONFIG_KEYS:
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = None
    return hashlib.sha256(cfg.dump().encode()).hexdigest()


def fingerprint(
    *, weights: str, config: str, vocabulary: object, dataset: str, num_images: int
) -> dict[str, str]:
    """What a saved state must match, by part (so that a refusal can say what changed)."""
    return {
        "checkpoint": weights,
        "config": config,
        "vocabulary": hashlib.sha256(repr(vocabulary).encode()).hexdigest(),
        "dataset": f"{dataset} ({num_images} images)",
        "processes": str(comm.get_world_size()),
    }


def plain(value: object) -> object:
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors, recursively, so
    that ``torch.load(weights_only=True)`` reads it back (detectron2's results hold np.float64)."""
    if isinstance(value, dict):
        return type(value)((key, plain(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return type(value)(plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


class ResumedInferenceSampler(InferenceSampler):
    """detectron2's InferenceSampler without this process's first ``start`` indices."""

    def __init__(self, size: int, start: int) -> None:
        super().__init__(size)
        self._local_indices = self._local_indices[start:]


@dataclass
class SavedPoint:
    """Where this process's shard of a dataset stands."""

    images_done: int = 0  # of this process's shard, skipped ones included
    num_evaluated: int = 0  # images given to the evaluators
    skipped: list[dict] = field(default_factory=list)  # records the mapper skipped
    evaluator_states: list[dict] | None = None  # one per evaluator, in order


class DatasetProgress:
    """One dataset's saved evaluation state in ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path, expected: dict[str, str], *, save_every: int) -> None:
        if save_every < 1:
            raise ValueError(f"save_every: expected a number of images >= 1, got {save_every}")
        self.folder = Path(folder)
        self.expected = expected
        self.save_every = save_every
        rank, world = comm.get_rank(), comm.get_world_size()
        self.progress_file = self.folder / f"progress_rank{rank}_of_{world}.pt"
        self.point = SavedPoint()

    def finished(self) -> dict | None:
        """The saved ``{"results", "skipped", "num_images"}`` of a finished dataset, or None.

        The main process decides and every process gets its answer.
        """
        finished = None
        if comm.is_main_process() and (self.folder / FINISHED_FILE).is_file():
            finished = self._read(self.folder / FINISHED_FILE)
        return comm.all_gather(finished)[0]

    def load(self) -> SavedPoint:
        """This process's saved point (a fresh one when nothing was saved); kept for restore."""
        if self.progress_file.is_file():
            saved = self._read(self.progress_file)
            self.point = SavedPoint(
                images_done=saved["images_done"],
                num_evaluated=saved["num_evaluated"],
                skipped=saved["skipped"],
                evaluator_states=saved["evaluators"],
            )
            logger.info(
                "%s: resuming after %d images of this process's shard (%s)",
                self.expected["dataset"],
                self.point.images_done,
                self.progress_file,
            )
        return self.point

    def restore(self, evaluators: list) -> None:
        """Give freshly reset ``evaluators`` the saved state, if any."""
        states = self.point.evaluator_states
        if states is None:
            return
        if len(states) != len(evaluators):
            raise ResumeMismatchError(
                f"{self.progress_file} holds {len(states)} evaluator states, this evaluation has "
                f"{len(evaluators)} evaluators; start over without resuming"
            )
        for evaluator, state in zip(evaluators, states, strict=True):
            evaluator.load_state_dict(state)

    def advance(
        self, images: int, evaluators: list, skipped: list[dict], num_evaluated: int
    ) -> None:
        """Count ``images`` more done; save every ``save_every`` images."""
        before = self.point.images_done
        self.point.images_done += images
        if before // self.save_every == self.point.images_done // self.save_every:
            return
        state = {
            "fingerprint": self.expected,
            "images_done": self.point.images_done,
            "num_evaluated": num_evaluated,
            "skipped": list(skipped),
            "evaluators": [evaluator.state_dict() for evaluator in evaluators],
        }
        write_atomically(self.progress_file, lambda tmp: torch.save(plain(state), tmp))

    def finish(self, results: dict | None, skipped: list[dict], num_images: int) -> None:
        """Save the dataset's results (main process) and drop every process's progress."""
        if comm.is_main_process():
            state = {
                "fingerprint": self.expected,
                "results": results,
                "skipped": skipped,
                "num_images": num_images,
            }
            finished = self.folder / FINISHED_FILE
            write_atomically(finished, lambda tmp: torch.save(plain(state), tmp))
        comm.synchronize()
        self.progress_file.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget earlier state of this dataset (a run that does not resume starts over)."""
        if comm.is_main_process():
            (self.folder / FINISHED_FILE).unlink(missing_ok=True)
        self.progress_file.unlink(missing_ok=True)
        comm.synchronize()

    def _read(self, path: Path) -> dict:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file: torch raises several kinds
            raise ResumeMismatchError(
                f"cannot read the saved evaluation state {path} ({exc}); delete it to start over"
            ) from exc
        found = saved.get("fingerprint", {}) if isinstance(saved, dict) else {}
        changed = [key for key in self.expected if found.get(key) != self.expected[key]]
        if changed:
            raise ResumeMismatchError(
                f"the saved evaluation state {path} was made with another "
                f"{', '.join(changed)} than this run's; it is not mixed in. Evaluate into "
                "another output folder, or run without resuming to start over"
            )
        return saved
