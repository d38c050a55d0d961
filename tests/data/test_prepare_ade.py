"""The ADE20K prepare scripts (A-150, A-847, panoptic) on tiny fake downloads, then registered."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from panopticapi.utils import rgb2id
from PIL import Image

from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.register_ade import (
    ADE150_LABELS,
    ADE150_NAME,
    ADE847_IMAGES,
    ADE847_LABELS,
    ADE847_NAME,
    ADE847_VOCABULARY,
    ADE_PANOPTIC_CATEGORIES,
    ADE_PANOPTIC_JSON,
    ADE_PANOPTIC_NAME,
    ADE_PANOPTIC_PNGS,
    ADE_PANOPTIC_SEMSEG,
    register_ade,
)
from maft_plus.data.vocabulary import read_builtin_vocabulary

NAMES = [ADE150_NAME, ADE847_NAME, ADE_PANOPTIC_NAME]


@pytest.fixture
def root(tmp_path: Path, fake_ade):
    """A datasets root holding both fake downloads; the ADE names are unregistered afterwards."""
    fake_ade.write(tmp_path)
    yield tmp_path
    unregister(NAMES)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_ade150_labels_shift_by_one_and_other_is_ignored(root, fake_ade):
    semantics = fake_ade.write_scene_parsing(root)
    fake_ade.prepare_ade150(root)
    assert register_ade(root) == NAMES
    dicts = DatasetCatalog.get(ADE150_NAME)
    assert [Path(d["file_name"]).name for d in dicts] == [f"ADE_val_{i:08d}.jpg" for i in (1, 2, 3)]
    for record, semantic in zip(dicts, semantics, strict=True):
        labels = read(record["sem_seg_file_name"])
        assert labels.dtype == np.uint8
        expected = semantic.astype(np.int64) - 1
        expected[semantic == 0] = 255
        np.testing.assert_array_equal(labels, expected)
    assert read(dicts[1]["sem_seg_file_name"])[0, 0] == 149
    metadata = MetadataCatalog.get(ADE150_NAME)
    assert metadata.stuff_classes == read_builtin_vocabulary("ade150")
    assert metadata.ignore_label == 255 and len(metadata.stuff_classes) == 150


def test_ade847_vocabulary_and_uint16_labels(root, fake_ade, caplog):
    with caplog.at_level(logging.WARNING):
        fake_ade.prepare_ade847(root)
    assert "found 3 classes" in caplog.text  # not 847: warned, not fatal
    assert (root / ADE847_VOCABULARY).read_text(encoding="utf-8") == fake_ade.FULL_VOCABULARY
    register_ade(root)
    metadata = MetadataCatalog.get(ADE847_NAME)
    assert metadata.stuff_classes == ["wall", "person,individual,someone", "lamp"]
    assert metadata.ignore_label == 65535
    dicts = DatasetCatalog.get(ADE847_NAME)
    assert [Path(d["sem_seg_file_name"]).name for d in dicts] == [
        "ADE_val_00000001.tif",
        "ADE_val_00000002.tif",
    ]
    labels = read(dicts[0]["sem_seg_file_name"])
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, fake_ade.FULL_EXPECTED)
    np.testing.assert_array_equal(read(dicts[1]["sem_seg_file_name"]), np.full((3, 5), 1))
    source = root / "ADE20K_2021_17_01/images/ADE/validation/urban/street/ADE_val_00000001.jpg"
    assert Path(dicts[0]["file_name"]).samefile(source)  # a hard link, not a copy
    assert Path(dicts[0]["file_name"]).parent == root / ADE847_IMAGES


def test_ade847_split_comes_from_the_folder(root, fake_ade):
    """An image in a validation folder counts as validation whatever its position in the index."""
    script = fake_ade.ade847_script
    names, presence, _, splits = script.read_index(root / "ADE20K_2021_17_01/index_ade20k.pkl")
    assert splits == ["training", "validation", "training", "validation"]
    np.testing.assert_array_equal(script.select_classes(presence, splits), [0, 1, 259])
    assert script.image_split("elsewhere", "ADE_val_00000009.jpg") == "validation"


def test_panoptic_segments(root, fake_ade):
    fake_ade.prepare_panoptic(root)
    categories = json.loads((root / ADE_PANOPTIC_CATEGORIES).read_text(encoding="utf-8"))
    assert [c["id"] for c in categories if c["isthing"]] == [
        fake_ade.BED,
        fake_ade.PERSON,
        fake_ade.CAR,
    ]
    content = json.loads((root / ADE_PANOPTIC_JSON).read_text(encoding="utf-8"))
    assert content["categories"] == categories
    assert [im["id"] for im in content["images"]] == [1, 2, 3]
    assert [im["file_name"] for im in content["images"]] == [
        f"ADE_val_{i:08d}.jpg" for i in (1, 2, 3)
    ]
    assert content["images"][0]["height"] == 6 and content["images"][0]["width"] == 8

    for annotation in content["annotations"]:
        ids = rgb2id(read(root / ADE_PANOPTIC_PNGS / annotation["file_name"]))
        segments = annotation["segments_info"]
        assert sorted(np.unique(ids[ids > 0]).tolist()) == [s["id"] for s in segments]
        semseg = read(root / ADE_PANOPTIC_SEMSEG / annotation["file_name"])
        assert semseg.dtype == np.uint8
        assert np.array_equal(semseg == 255, ids == 0)
        for segment in segments:
            mask = ids == segment["id"]
            ys, xs = np.nonzero(mask)
            assert segment["area"] == mask.sum()
            assert segment["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            assert segment["iscrowd"] == 0
            assert (semseg[mask] == segment["category_id"] - 1).all()

    # the hand-made image: things split per instance, stuff merged per class
    ids = rgb2id(read(root / ADE_PANOPTIC_PNGS / "ADE_val_00000001.png"))
    segments = {s["id"]: s for s in content["annotations"][0]["segments_info"]}
    assert {i: (s["category_id"], s["area"]) for i, s in segments.items()} == {
        # wall: two regions, one segment, minus the pixel of person 1
        fake_ade.WALL * 1000: (fake_ade.WALL, 17),
        fake_ade.FLOOR * 1000: (fake_ade.FLOOR, 16),  # with the pixels of the dropped instance
        fake_ade.PERSON * 1000: (fake_ade.PERSON, 5),
        fake_ade.PERSON * 1000 + 1: (fake_ade.PERSON, 4),
        fake_ade.CAR * 1000: (fake_ade.CAR, 2),
    }
    assert ids[0, 1] == fake_ade.PERSON * 1000  # the wall pixel inside person 1
    assert (ids[3:5, 6:8] == 0).all()  # bed without an instance, and "other"
    assert segments[fake_ade.WALL * 1000]["bbox"] == [0, 0, 8, 6]


def test_panoptic_registration_loads_dicts(root, fake_ade):
    fake_ade.prepare_panoptic(root)
    register_ade(root)
    dicts = DatasetCatalog.get(ADE_PANOPTIC_NAME)
    assert len(dicts) == 3
    metadata = MetadataCatalog.get(ADE_PANOPTIC_NAME)
    assert metadata.stuff_classes == read_builtin_vocabulary("ade150")
    assert [k for k, flag in enumerate(metadata.is_thing) if flag] == [
        fake_ade.BED - 1,
        fake_ade.PERSON - 1,
        fake_ade.CAR - 1,
    ]
    record = dicts[0]
    assert Path(record["file_name"]).name == "ADE_val_00000001.jpg"
    assert Path(record["sem_seg_file_name"]).parent == root / ADE_PANOPTIC_SEMSEG
    assert (record["height"], record["width"]) == (6, 8)
    contiguous = {s["category_id"]: s["isthing"] for s in record["segments_info"]}
    assert contiguous == {
        fake_ade.WALL - 1: False,
        fake_ade.FLOOR - 1: False,
        fake_ade.PERSON - 1: True,
        fake_ade.CAR - 1: True,
    }


def output_files(root: Path) -> dict[Path, tuple[int, bytes]]:
    outputs = [ADE150_LABELS, ADE847_IMAGES, ADE847_LABELS, ADE847_VOCABULARY, ADE_PANOPTIC_PNGS]
    outputs += [ADE_PANOPTIC_SEMSEG, ADE_PANOPTIC_JSON, ADE_PANOPTIC_CATEGORIES]
    files = {}
    for output in outputs:
        path = root / output
        for file in [path] if path.is_file() else sorted(path.iterdir()):
            files[file] = (file.stat().st_mtime_ns, file.read_bytes())
    return files


def test_rerunning_skips_up_to_date_files(root, fake_ade, capsys):
    fake_ade.prepare(root)
    first = output_files(root)
    assert len(first) == 3 + 2 + 2 + 1 + 3 + 3 + 1 + 1
    capsys.readouterr()
    fake_ade.prepare(root)
    assert output_files(root) == first  # same bytes, same modification times
    summaries = capsys.readouterr().out.splitlines()
    assert len(summaries) == 3
    assert all("(0 converted" in line for line in summaries), summaries


@pytest.mark.parametrize("script", ["ade150_script", "ade847_script", "panoptic_script"])
def test_missing_download_names_the_folder(tmp_path, fake_ade, script):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "ADE"))):
        getattr(fake_ade, script).main(["--root", str(tmp_path)])


def test_missing_instances_name_the_file(root, fake_ade):
    instance = root / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000002.png"
    instance.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(instance))):
        fake_ade.prepare_panoptic(root)


def test_wrong_image_count_is_an_error(root, fake_ade):
    with pytest.raises(RuntimeError, match="expected 2000 files"):
        fake_ade.ade150_script.main(["--root", str(root)])


@pytest.mark.parametrize(
    ("name", "expected", "script"),
    [
        (ADE150_NAME, ADE150_LABELS, "prepare_ade20k_150.py"),
        (ADE847_NAME, ADE847_IMAGES, "prepare_ade20k_847.py"),
        (ADE_PANOPTIC_NAME, ADE_PANOPTIC_PNGS, "prepare_ade20k_panoptic.py"),
    ],
)
def test_loading_before_preparing_names_path_and_script(root, name, expected, script):
    assert register_ade(root) == NAMES  # the downloads are there, nothing is prepared
    with pytest.raises(FileNotFoundError) as error:
        DatasetCatalog.get(name)
    assert str(root / expected) in str(error.value)
    assert f"datasets/{script}" in str(error.value)


def test_registration_on_an_empty_root(tmp_path):
    try:
        assert register_ade(tmp_path) == NAMES
        assert MetadataCatalog.get(ADE847_NAME).stuff_classes == []
        assert sum(MetadataCatalog.get(ADE_PANOPTIC_NAME).is_thing) == 0
        for name in NAMES:
            with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
                DatasetCatalog.get(name)
    finally:
        unregister(NAMES)


def test_missing_vocabulary_is_named(root, fake_ade):
    fake_ade.prepare_ade847(root)
    (root / ADE847_VOCABULARY).unlink()
    register_ade(root)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / ADE847_VOCABULARY))):
        DatasetCatalog.get(ADE847_NAME)
