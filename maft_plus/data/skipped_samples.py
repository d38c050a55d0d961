"""Bad training samples: skipped, handed to the trainer, counted, and fatal only past a limit.

A training mapper that meets a sample it cannot use (a missing, corrupt or truncated image, a
label of the wrong size, ...) returns None, and detectron2's ``MapDataset`` maps another sample in
its place. The mapper keeps the skip records (``skip_records.skip_record``) it has not reported yet
(:class:`PendingSkips`) and puts them in its next good sample under :data:`SKIPPED_KEY`. That
sample reaches the trainer through the DataLoader like any other, from worker processes too, so
no state is shared between processes and no skip is counted twice. The trainer iterates
:class:`SkipCountingLoader`, which takes the records out of every batch before the model sees it,
sums them over the processes of the run, logs each bad file once, records the counts in the event
storage and stops the run when the :class:`SkipLimit` is passed.

A mapper applies the limit itself only while its skips cannot reach the trainer, i.e. when it
has met ``min_skipped`` bad samples in a row: a data set whose files are all bad then stops at
once with the same error instead of being read to the end by ``MapDataset``'s retries.
"""

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from detectron2.config import CfgNode
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from .skip_records import skip_record

logger = logging.getLogger(__name__)

__all__ = [
    "SKIPPED_KEY",
    "PendingSkips",
    "SkipCountingLoader",
    "SkipLimit",
    "SkippedSamplesError",
]

# The field of a training sample that carries the skip records met since the previous good sample
# of the same mapper; SkipCountingLoader removes it before the model sees the batch.
SKIPPED_KEY = "skipped_before"
# Storage scalars (and metrics.json keys): skipped samples so far, and their share of those met.
SKIPPED_SCALAR = "data/skipped_samples"
FRACTION_SCALAR = "data/skipped_fraction"
NUM_NAMED = 5  # bad files named by the error that stops the run (the most recent ones)


class SkippedSamplesError(RuntimeError):
    """More training samples were skipped than the limit allows; the message names the last ones."""


@dataclass(frozen=True, kw_only=True)
class SkipLimit:
    """When skipping stops being harmless: ``skipped >= min_skipped`` and
    ``skipped > max_fraction * seen``, where ``seen`` counts the samples met, good and skipped."""

    max_fraction: float  # largest share of skipped samples the run tolerates, in [0, 1]
    min_skipped: int  # the run never stops for fewer skipped samples than this (>= 1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(
                f"DATALOADER.MAX_SKIPPED_FRACTION is {self.max_fraction}; expected a fraction in "
                "[0, 1] (1 never stops the run)"
            )
        if self.min_skipped < 1:
            raise ValueError(
                f"DATALOADER.MIN_SKIPPED_TO_STOP is {self.min_skipped}; expected an integer >= 1"
            )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "SkipLimit":
        """``DATALOADER.MAX_SKIPPED_FRACTION`` and ``DATALOADER.MIN_SKIPPED_TO_STOP``."""
        return cls(
            max_fraction=float(cfg.DATALOADER.MAX_SKIPPED_FRACTION),
            min_skipped=int(cfg.DATALOADER.MIN_SKIPPED_TO_STOP),
        )

    def exceeded(self, *, skipped: int, seen: int) -> bool:
        """Whether ``skipped`` of ``seen`` samples met is past the limit."""
        return skipped >= self.min_skipped and skipped > self.max_fraction * seen

    def error(self, *, skipped: int, seen: int, last: Sequence[dict]) -> SkippedSamplesError:
        """The error that stops the run, naming the ``last`` skip records with their reasons."""
        files = "\n".join(f"  {record['file_name']}: {record['reason']}" for record in last)
        return SkippedSamplesError(
            f"{skipped} of the {seen} training samples met so far could not be used "
            f"({skipped / seen:.1%}), more than DATALOADER.MAX_SKIPPED_FRACTION "
            f"({self.max_fraction:.1%}); the last bad files:\n{files}\n"
            "Fix or remove these files (or raise DATALOADER.MAX_SKIPPED_FRACTION), then continue "
            "from the last checkpoint with --resume"
        )


class PendingSkips:
    """A mapper's skips not yet handed to the trainer, and its own counts (per process: a
    DataLoader worker has its own copy)."""

    def __init__(self, *, limit: SkipLimit) -> None:
        self.limit = limit
        self.unreported: list[dict] = []  # skip records since the last good sample
        self.skipped = 0  # samples this mapper skipped
        self.seen = 0  # samples this mapper met, good and skipped

    def skip(self, file_name: str, reason: str) -> None:
        """Keep the record of a bad sample for the next good one.

        Raises:
            SkippedSamplesError: ``limit.min_skipped`` bad samples in a row, and this mapper's
                own share of skips past the limit (no good sample could report them).
        """
        self.unreported.append(skip_record(file_name, reason))
        self.skipped += 1
        self.seen += 1
        if len(self.unreported) >= self.limit.min_skipped and self.limit.exceeded(
            skipped=self.skipped, seen=self.seen
        ):
            raise self.limit.error(
                skipped=self.skipped, seen=self.seen, last=self.unreported[-NUM_NAMED:]
            )

    def deliver(self, sample: dict) -> dict:
        """``sample`` (a good one), carrying the unreported skip records under SKIPPED_KEY."""
        self.seen += 1
        if self.unreported:
            sample[SKIPPED_KEY] = self.unreported
            self.unreported = []
        return sample


class SkipCountingLoader:
    """Iterate a training loader's batches (lists of sample dicts) with the skips taken out.

    For every batch: remove SKIPPED_KEY from its samples; gather the batch's counts and records
    from every process of the run (every process draws one batch per iteration); log each bad
    file once; put ``data/skipped_samples`` and ``data/skipped_fraction`` (run totals) in the
    event storage; raise :class:`SkippedSamplesError` in every process alike when the totals pass
    ``limit``. It must be iterated inside detectron2's ``EventStorage`` (the trainer's loop).
    """

    def __init__(self, loader: Iterable[list[dict]], *, limit: SkipLimit) -> None:
        self.loader = loader
        self.limit = limit
        self.skipped = 0  # over the run's processes
        self.seen = 0  # samples met, good and skipped, over the run's processes
        self.last: deque[dict] = deque(maxlen=NUM_NAMED)  # the most recent skip records
        self._logged: set[str] = set()  # bad files already logged

    def __iter__(self) -> Iterator[list[dict]]:
        for batch in self.loader:
            self.absorb(batch)
            yield batch

    def absorb(self, batch: list[dict]) -> None:
        """Take the skip records out of ``batch`` and count them with the other processes'."""
        records = [record for sample in batch for record in sample.pop(SKIPPED_KEY, ())]
        for seen, new in comm.all_gather((len(batch) + len(records), records)):  # per process
            self.seen += seen
            self.skipped += len(new)
            for record in new:
                self.last.append(record)
                if record["file_name"] not in self._logged:
                    self._logged.add(record["file_name"])
                    logger.warning(
                        "skipped training sample %s: %s", record["file_name"], record["reason"]
                    )
        storage = get_event_storage()
        storage.put_scalar(SKIPPED_SCALAR, self.skipped, smoothing_hint=False)
        storage.put_scalar(FRACTION_SCALAR, self.skipped / max(self.seen, 1), smoothing_hint=False)
        if self.limit.exceeded(skipped=self.skipped, seen=self.seen):
            raise self.limit.error(skipped=self.skipped, seen=self.seen, last=list(self.last))
