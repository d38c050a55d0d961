"""EvaluationMapper: detectron2's inference mapper on good records, a skip record on bad ones."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from PIL import Image

from maft_plus.config import setup_cfg
from maft_plus.data.dataset_mappers import EvaluationMapper
from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.skip_records import is_skip_record
from maft_plus.data.synthetic import write_synthetic_dataset

TINY = "configs/tiny/maftp_tiny.yaml"
PREFIX = "maftp_mappertest"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_train=1, num_val=2, image_size=64)
    names = register_synthetic(root, prefix=PREFIX)
    yield {
        "sem_seg": DatasetCatalog.get(f"{PREFIX}_sem_seg_val"),
        "panoptic": DatasetCatalog.get(f"{PREFIX}_panoptic_val"),
    }
    unregister(names)


@pytest.fixture
def mapper() -> EvaluationMapper:
    return EvaluationMapper(augmentations=[T.ResizeShortestEdge(64, 128)], image_format="RGB")


@pytest.fixture
def mapper_logs(caplog):
    """The mapper's log records, wherever detectron2's setup_logger stopped propagation."""
    logger = logging.getLogger("maft_plus.data.dataset_mappers.evaluation_mapper")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("kind", ["sem_seg", "panoptic"])
def test_good_records_map_as_detectron2_inference_mapper(records, kind):
    cfg = setup_cfg(TINY, ["INPUT.MIN_SIZE_TEST", "96"])  # the 64-px images are resized
    ours, reference = EvaluationMapper(cfg), DatasetMapper(cfg, is_train=False)
    for record in records[kind]:
        expected, sample = reference(record), ours(record)
        assert set(sample) == set(expected) and not is_skip_record(sample)
        assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.uint8
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(sample[key], value), key
            else:
                assert sample[key] == value, key
        assert "image" not in record  # the caller's dict is left as it was


def truncate(path: Path, target: Path) -> Path:
    data = path.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def broken_record(record: dict, fault: str, folder: Path) -> tuple[dict, str, str]:
    """A copy of ``record`` with one fault; the file it names and the expected reason (regex)."""
    record = dict(record)
    image, label = Path(record["file_name"]), Path(record["sem_seg_file_name"])
    if fault == "truncated jpeg":
        bad = record["file_name"] = str(truncate(image, folder / "half.jpg"))
        return record, bad, "could not read the image .* image file is truncated"
    if fault == "text as jpeg":
        bad = folder / "notes.jpg"
        bad.write_text("not an image")
        record["file_name"] = str(bad)
        return record, str(bad), "could not read the image .* cannot identify image file"
    if fault == "missing image":
        bad = record["file_name"] = str(folder / "gone.jpg")
        return record, bad, "image .* not found"
    if fault == "missing label":
        bad = record["sem_seg_file_name"] = str(folder / "gone.png")
        return record, bad, "label .*gone.png of image .* not found"
    if fault == "truncated png label":
        bad = record["sem_seg_file_name"] = str(truncate(label, folder / "half.png"))
        return (
            record,
            bad,
            "could not read the label .*half.png of image .*: image file is truncated",
        )
    if fault == "label of the wrong size":
        bad = folder / "small.png"
        Image.fromarray(np.zeros((32, 48), dtype=np.uint8)).save(bad)
        record["sem_seg_file_name"] = str(bad)
        return record, str(bad), r"is 48x32 \(WxH\) but its image .* is 64x64"
    if fault == "image not of the record's size":
        record["height"], record["width"] = 64, 80
        return record, record["file_name"], r"is 64x64 \(WxH\) but its dataset record says 80x64"
    raise ValueError(fault)


FAULTS = [
    "truncated jpeg",
    "text as jpeg",
    "missing image",
    "missing label",
    "truncated png label",
    "label of the wrong size",
    "image not of the record's size",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_record_is_skipped_naming_the_file(records, mapper, mapper_logs, tmp_path, fault):
    record, bad_file, reason = broken_record(records["sem_seg"][0], fault, tmp_path)
    sample = mapper(record)
    assert set(sample) == {"file_name", "reason"} and is_skip_record(sample)
    assert sample["file_name"] == record["file_name"]
    assert bad_file in sample["reason"]
    assert re.search(reason, sample["reason"]), sample["reason"]
    assert any(bad_file in r.getMessage() for r in mapper_logs.records)
    assert mapper(records["sem_seg"][1])["image"].shape == (3, 64, 64)  # the next one still maps


@pytest.mark.parametrize("fault", ["missing", "wrong size"])
def test_a_bad_panoptic_png_is_skipped(records, mapper, tmp_path, fault):
    record = dict(records["panoptic"][0])
    bad = tmp_path / "pan.png"
    if fault == "wrong size":
        Image.fromarray(np.zeros((64, 32, 3), dtype=np.uint8)).save(bad)
    record["pan_seg_file_name"] = str(bad)
    reason = mapper(record)["reason"]
    assert str(bad) in reason
    assert ("not found" if fault == "missing" else "is 32x64 (WxH) but its image") in reason
