"""The shared steps of the prepare scripts (maft_plus.data.prepare), on hand-made files."""

import os
from pathlib import Path

import pytest

from maft_plus.data import prepare
from maft_plus.data.prepare import (
    Conversions,
    argument_parser,
    link_or_copy,
    map_with_progress,
    parse_arguments,
    read_split,
    write_text_if_changed,
)


def square_in_process(job: int) -> tuple[int, int]:
    """A job for the worker processes: its square and the id of the process that computed it."""
    return job * job, os.getpid()


def set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, (seconds, seconds))


def test_link_or_copy_makes_a_hard_link(tmp_path):
    source = tmp_path / "image.jpg"
    source.write_bytes(b"pixels")
    target = tmp_path / "linked" / "image.jpg"
    assert link_or_copy(source, target)
    assert target.samefile(source)
    assert not link_or_copy(source, target)  # up to date: left alone
    assert not list(tmp_path.rglob("*.tmp"))


def test_link_or_copy_falls_back_to_a_copy(tmp_path, monkeypatch):
    def refuse(source, target):
        raise OSError("cross-device link")

    monkeypatch.setattr(prepare.os, "link", refuse)
    source = tmp_path / "image.jpg"
    source.write_bytes(b"pixels")
    set_mtime(source, 1_000_000)
    target = tmp_path / "copied" / "image.jpg"
    assert link_or_copy(source, target)
    assert not target.samefile(source)
    assert target.read_bytes() == b"pixels"
    assert target.stat().st_mtime == 1_000_000  # copied with its time, so a re-run skips it
    assert not link_or_copy(source, target)


def test_link_or_copy_replaces_an_outdated_target(tmp_path):
    source = tmp_path / "image.jpg"
    source.write_bytes(b"new pixels")
    target = tmp_path / "linked.jpg"
    target.write_bytes(b"old pixels")
    set_mtime(target, 1_000_000)
    assert link_or_copy(source, target)
    assert target.samefile(source)


def test_write_text_if_changed(tmp_path):
    path = tmp_path / "folder" / "vocabulary.txt"
    assert write_text_if_changed(path, "0:invalid_class_id\n1:wall\n")
    set_mtime(path, 1_000_000)
    assert not write_text_if_changed(path, "0:invalid_class_id\n1:wall\n")
    assert path.stat().st_mtime == 1_000_000  # not rewritten: outputs made from it stay current
    assert write_text_if_changed(path, "0:invalid_class_id\n1:floor\n")
    assert path.read_text(encoding="utf-8") == "0:invalid_class_id\n1:floor\n"
    assert path.stat().st_mtime != 1_000_000
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("workers", [1, 2])
def test_map_with_progress_keeps_job_order(workers):
    jobs = list(range(200, 0, -1))  # several chunks of 64 for the process pool
    results = map_with_progress(square_in_process, jobs, workers=workers, description="squares")
    assert [square for square, _ in results] == [job * job for job in jobs]
    in_this_process = {pid for _, pid in results} == {os.getpid()}
    assert in_this_process == (workers == 1)


def test_read_split_strips_blanks(tmp_path):
    split_file = tmp_path / "val.txt"
    split_file.write_text("2008_000002\n\n  2008_000007 \n2009_000013 1\n   \n")
    assert read_split(split_file) == ["2008_000002", "2008_000007", "2009_000013"]
    assert read_split(split_file, expected=3) == ["2008_000002", "2008_000007", "2009_000013"]
    with pytest.raises(RuntimeError, match=f"{split_file} lists 3 ids, expected 4"):
        read_split(split_file, expected=4)


def test_conversions_skip_only_up_to_date_targets(tmp_path):
    source, first, second = (tmp_path / name for name in ("source.png", "a.png", "b.png"))
    for path, seconds in ((source, 2_000_000), (first, 3_000_000), (second, 1_000_000)):
        path.write_bytes(b"")
        set_mtime(path, seconds)
    conversions = Conversions()
    assert conversions.skip([first], source)
    assert not conversions.skip([first, second], source)  # b.png is older than its source
    assert not conversions.skip([tmp_path / "missing.png"], source)
    assert (conversions.converted, conversions.skipped) == (2, 1)
    assert str(conversions) == "2 converted, 1 already up to date"


def test_arguments(monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    args = parse_arguments(argument_parser("Prepare X.\n\nMore.", expected_val_images=7), [])
    assert vars(args) == {"root": str(tmp_path), "expected_val_images": 7}
    parser = argument_parser(
        "Prepare Y.", expected_val_images=5, expected_train_images=9, workers=True
    )
    args = parse_arguments(parser, ["--root", "elsewhere", "--expected-train-images", "3"])
    assert (args.root, args.expected_train_images, args.expected_val_images) == ("elsewhere", 3, 5)
    assert args.workers >= 1
    assert parser.description == "Prepare Y."
