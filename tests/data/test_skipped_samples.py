"""Skipped training samples: the trainer's count, its storage scalars, its log and its limit."""

import logging

import pytest
from detectron2.utils.events import EventStorage

from maft_plus.data.skip_records import skip_record
from maft_plus.data.skipped_samples import (
    FRACTION_SCALAR,
    SKIPPED_KEY,
    SKIPPED_SCALAR,
    SkipCountingLoader,
    SkipLimit,
    SkippedSamplesError,
)


def sample(name: str, *skipped: str) -> dict:
    """A stand-in training sample, carrying skip records of the files ``skipped``."""
    item = {"file_name": name, "image": None}
    if skipped:
        item[SKIPPED_KEY] = [skip_record(f, f"could not read the image {f}") for f in skipped]
    return item


def iterate(loader: SkipCountingLoader) -> list[list[dict]]:
    """Every batch, one trainer iteration each, as detectron2's loop would draw them."""
    batches = []
    with EventStorage(0) as storage:
        for batch in loader:
            batches.append(batch)
            storage.step()
    return batches


def test_skips_are_taken_out_counted_and_stored():
    batches = [
        [sample("a.png"), sample("b.png", "bad1.png")],
        [sample("c.png", "bad2.png", "bad1.png"), sample("d.png")],
        [sample("e.png"), sample("f.png")],
    ]
    loader = SkipCountingLoader(batches, limit=SkipLimit(max_fraction=1.0, min_skipped=1))
    with EventStorage(0) as storage:
        seen = []
        for batch in loader:
            seen.append([s["file_name"] for s in batch])
            assert all(SKIPPED_KEY not in s for s in batch)  # the model never sees them
            scalars = {k: v for k, (v, _) in storage.latest().items()}
            seen[-1].append((scalars[SKIPPED_SCALAR], scalars[FRACTION_SCALAR]))
            storage.step()
    assert seen == [
        ["a.png", "b.png", (1, 1 / 3)],
        ["c.png", "d.png", (3, 3 / 7)],
        ["e.png", "f.png", (3, 3 / 9)],
    ]
    assert (loader.skipped, loader.seen) == (3, 9)


def test_each_bad_file_is_logged_once(caplog):
    batches = [[sample("a.png", "bad1.png")], [sample("b.png", "bad1.png", "bad2.png")]]
    loader = SkipCountingLoader(batches, limit=SkipLimit(max_fraction=1.0, min_skipped=1))
    with caplog.at_level(logging.WARNING, logger="maft_plus.data.skipped_samples"):
        iterate(loader)
    logged = [r.getMessage() for r in caplog.records if "skipped training sample" in r.getMessage()]
    assert logged == [
        "skipped training sample bad1.png: could not read the image bad1.png",
        "skipped training sample bad2.png: could not read the image bad2.png",
    ]


def test_past_the_limit_the_run_stops_naming_the_last_bad_files():
    batches = [
        [sample("a.png", "bad1.png"), sample("b.png")],  # 1 of 3: under the minimum count
        [sample("c.png", "bad2.png"), sample("d.png")],  # 2 of 6: not over a third
        [sample("e.png", "bad3.png"), sample("f.png")],  # 3 of 9: not over a third
        [sample("g.png", "bad4.png"), sample("h.png")],  # 4 of 12: not over a third
        [sample("i.png", "bad5.png", "bad6.png"), sample("j.png")],  # 6 of 16: stop
        [sample("k.png"), sample("l.png")],
    ]
    loader = SkipCountingLoader(batches, limit=SkipLimit(max_fraction=1 / 3, min_skipped=2))
    drawn = []
    with pytest.raises(SkippedSamplesError) as info, EventStorage(0) as storage:
        for batch in loader:
            drawn.append(batch)
            storage.step()
    assert len(drawn) == 4
    message = str(info.value)
    assert message.startswith("6 of the 16 training samples met so far could not be used (37.5%)")
    assert "DATALOADER.MAX_SKIPPED_FRACTION (33.3%)" in message
    named = [f"bad{i}.png" for i in range(2, 7)]  # the last five
    assert all(f"  {name}: could not read the image {name}" in message for name in named)
    assert "bad1.png" not in message
    assert "--resume" in message


def test_one_early_bad_file_does_not_stop_the_run():
    batches = [[sample("a.png", "bad1.png")], [sample("b.png")]]
    loader = SkipCountingLoader(batches, limit=SkipLimit(max_fraction=0.01, min_skipped=2))
    assert len(iterate(loader)) == 2  # 1 of 3 skipped, more than 1%, but fewer than 2


@pytest.mark.parametrize(
    ("fraction", "minimum", "message"),
    [
        (1.5, 10, r"MAX_SKIPPED_FRACTION is 1\.5; expected a fraction in \[0, 1\]"),
        (-0.1, 10, r"MAX_SKIPPED_FRACTION is -0\.1"),
        (0.01, 0, r"MIN_SKIPPED_TO_STOP is 0; expected an integer >= 1"),
    ],
)
def test_a_bad_limit_is_named(fraction, minimum, message):
    with pytest.raises(ValueError, match=message):
        SkipLimit(max_fraction=fraction, min_skipped=minimum)
