"""The ADE20K prepare scripts (A-150, A-847, panoptic) on tiny fake downloads, then registered."""

import json
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
    ADE_PANOPTIC_JSON,
    ADE_PANOPTIC_NAME,
    ADE_PANOPTIC_PNGS,
    ade_panoptic_categories,
    register_ade,
)
from maft_plus.data.vocabulary.class_lists import builtin_class_list, read_builtin_vocabulary

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
    assert metadata.stuff_classes == read_builtin_vocabulary("ade150")  # the reference list
    assert metadata.plain_classes == read_builtin_vocabulary("ade150", "plain")
    assert metadata.class_ids == list(range(1, 151))
    assert metadata.ignore_label == 255 and sum(metadata.is_thing) == 100


def test_ade847_object_codes_become_train_ids(root, fake_ade):
    fake_ade.prepare_ade847(root)
    register_ade(root)
    metadata = MetadataCatalog.get(ADE847_NAME)
    assert metadata.stuff_classes == read_builtin_vocabulary("ade847")
    assert metadata.ignore_label == 65535 and metadata.class_ids == list(range(1, 848))
    dicts = DatasetCatalog.get(ADE847_NAME)
    assert [Path(d["sem_seg_file_name"]).name for d in dicts] == [
        "ADE_val_00000001.tif",
        "ADE_val_00000002.tif",
    ]
    labels = read(dicts[0]["sem_seg_file_name"])
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, fake_ade.FULL_EXPECTED)  # 2978 -> 0, 312 -> 1, ...
    image = Path(dicts[0]["file_name"])
    assert image.parent == root / ADE847_IMAGES
    source = root / "ADE20K_2021_17_01/images/ADE/validation/urban/street/ADE_val_00000001.jpg"
    assert not image.samefile(source)  # saved again, not linked
    with Image.open(image) as saved:
        assert saved.format == "JPEG" and saved.size == (5, 3)


def test_ade847_large_image_is_resized_to_a_shorter_side_of_512(root, fake_ade):
    fake_ade.prepare_ade847(root)
    labels = read(root / ADE847_LABELS / "ADE_val_00000002.tif")
    assert labels.shape == (512, 683)  # 1024 x 768 -> 683 x 512
    # nearest (OpenCV): output pixel (y, x) takes source pixel (y * 768 / 512, x * 1024 / 683)
    rows = np.floor(np.arange(512) * (768 / 512)).astype(int)
    columns = np.floor(np.arange(683) * (1024 / 683)).astype(int)
    codes = fake_ade.large_codes()[np.ix_(rows, columns)]
    expected = np.select([codes == 2978, codes == 312, codes == 3148], [0, 1, 846], 65535)
    np.testing.assert_array_equal(labels, expected)
    with Image.open(root / ADE847_IMAGES / "ADE_val_00000002.jpg") as image:
        assert image.format == "JPEG" and image.size == (683, 512)
        pixels = np.asarray(image, dtype=np.float64)  # (512, 683, 3)
    # bilinear of a horizontal ramp is the ramp at the pixel centres mapped back, within JPEG error
    ramp = np.linspace(0, 255, 1024).astype(np.uint8).astype(np.float64)
    centres = np.clip((np.arange(683) + 0.5) * 1024 / 683 - 0.5, 0, 1023)
    assert np.abs(pixels.mean(axis=(0, 2)) - np.interp(centres, np.arange(1024), ramp)).max() < 3


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((768, 1024), (512, 683)),
        ((1024, 768), (683, 512)),
        ((600, 520), (591, 512)),
        ((513, 513), (512, 512)),
        ((512, 2000), None),  # the shorter side is not over 512
        ((300, 400), None),
    ],
)
def test_resized_size(fake_ade, size, expected):
    assert fake_ade.ade847_script.resized_size(*size) == expected


def test_panoptic_segments(root, fake_ade):
    fake_ade.prepare_panoptic(root)
    content = json.loads((root / ADE_PANOPTIC_JSON).read_text(encoding="utf-8"))
    assert content["categories"] == ade_panoptic_categories()
    assert [c["id"] for c in content["categories"]] == list(range(150))
    assert sum(c["isthing"] for c in content["categories"]) == 100
    assert [im["id"] for im in content["images"]] == [1, 2, 3]
    assert [im["file_name"] for im in content["images"]] == [
        f"ADE_val_{i:08d}.jpg" for i in (1, 2, 3)
    ]
    assert content["images"][0]["height"] == 6 and content["images"][0]["width"] == 8

    # the hand-made image: stuff pasted first, then every instance over it
    ids = rgb2id(read(root / ADE_PANOPTIC_PNGS / "ADE_val_00000001.png"))
    wall, sky, floor, person, car = 1000, 3000, 4000, 13000, 21000
    expected = np.array(
        [
            [wall, person, wall, wall, wall, wall, wall, wall],
            [wall, person, person, wall, wall, person + 1, person + 1, wall],
            [wall, person, person, wall, wall, person + 1, person + 1, wall],
            [floor, floor, floor, floor, floor, floor, 0, 0],  # bed without instance, unlabeled
            [person + 2, person + 2, floor, floor, floor, floor, 0, 0],  # a person on floor
            [wall, wall, floor, floor, car, car, car, floor],  # the car covers the sky pixel
        ]
    )
    np.testing.assert_array_equal(ids, expected)
    segments = content["annotations"][0]["segments_info"]
    # (id, category id, area, bbox) in paste order; areas and boxes as pasted, before later
    # instances covered pixels: the wall keeps person 1's pixel, the sky its covered pixel
    assert [(s["id"], s["category_id"], s["area"], s["bbox"]) for s in segments] == [
        (wall, 0, 18, [0, 0, 8, 6]),
        (sky, 2, 1, [6, 5, 1, 1]),
        (floor, 3, 15, [0, 3, 8, 3]),
        (person, 12, 5, [1, 0, 2, 3]),
        (person + 1, 12, 4, [5, 1, 2, 2]),
        (person + 2, 12, 2, [0, 4, 2, 1]),
        (car, 20, 3, [4, 5, 3, 1]),
    ]
    assert all(s["iscrowd"] == 0 for s in segments)
    # the flag (a thing) without an instance is unlabeled; the rest of that image is wall
    ids = rgb2id(read(root / ADE_PANOPTIC_PNGS / "ADE_val_00000002.png"))
    assert ids[0, 0] == 0 and (ids.ravel()[1:] == wall).all()


def test_an_instance_with_two_categories_is_an_error(root, fake_ade):
    path = root / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000003.png"
    rgb = np.asarray(Image.open(path)).copy()
    rgb[2, 2, 0] = fake_ade.CAR_R  # one pixel of the person instance says car
    Image.fromarray(rgb).save(path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*instance 7 has instance"):
        fake_ade.prepare_panoptic(root)


def test_panoptic_registration_loads_dicts(root, fake_ade):
    fake_ade.prepare_ade150(root)
    fake_ade.prepare_panoptic(root)
    register_ade(root)
    dicts = DatasetCatalog.get(ADE_PANOPTIC_NAME)
    assert len(dicts) == 3
    metadata = MetadataCatalog.get(ADE_PANOPTIC_NAME)
    assert metadata.stuff_classes == read_builtin_vocabulary("ade150")
    assert metadata.is_thing == [bool(c["isthing"]) for c in ade_panoptic_categories()]
    assert metadata.thing_dataset_id_to_contiguous_id[12] == 12  # category id = train id
    record = dicts[0]
    assert Path(record["file_name"]).name == "ADE_val_00000001.jpg"
    # its semantic labels are A-150's, not labels derived from the panoptic pngs
    assert Path(record["sem_seg_file_name"]) == root / ADE150_LABELS / "ADE_val_00000001.png"
    assert (record["height"], record["width"]) == (6, 8)
    assert {s["category_id"]: s["isthing"] for s in record["segments_info"]} == {
        0: False,
        2: False,
        3: False,
        12: True,
        20: True,
    }


def output_files(root: Path) -> dict[Path, tuple[int, bytes]]:
    outputs = [ADE150_LABELS, ADE847_IMAGES, ADE847_LABELS, ADE_PANOPTIC_PNGS, ADE_PANOPTIC_JSON]
    files = {}
    for output in outputs:
        path = root / output
        for file in [path] if path.is_file() else sorted(path.iterdir()):
            files[file] = (file.stat().st_mtime_ns, file.read_bytes())
    return files


def test_rerunning_skips_up_to_date_files(root, fake_ade, capsys):
    fake_ade.prepare(root)
    first = output_files(root)
    assert len(first) == 3 + 2 + 2 + 3 + 1
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


def test_missing_semantic_labels_of_panoptic_name_their_script(root, fake_ade):
    fake_ade.prepare_panoptic(root)
    register_ade(root)
    with pytest.raises(FileNotFoundError) as error:
        DatasetCatalog.get(ADE_PANOPTIC_NAME)
    assert str(root / ADE150_LABELS) in str(error.value)
    assert "datasets/prepare_ade20k_150.py" in str(error.value)


def test_missing_instances_name_the_file(root, fake_ade):
    instance = root / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000002.png"
    instance.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(instance))):
        fake_ade.prepare_panoptic(root)


@pytest.mark.parametrize("script", ["ade150_script", "ade847_script", "panoptic_script"])
def test_wrong_image_count_is_an_error(root, fake_ade, script):
    with pytest.raises(RuntimeError, match="expected 2000 files"):  # the real validation sets
        getattr(fake_ade, script).main(["--root", str(root)])


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
    """Every set is registered with its full reference vocabulary before anything is prepared."""
    try:
        assert register_ade(tmp_path) == NAMES
        assert len(MetadataCatalog.get(ADE847_NAME).stuff_classes) == 847
        assert sum(MetadataCatalog.get(ADE_PANOPTIC_NAME).is_thing) == 100
        assert MetadataCatalog.get(ADE_PANOPTIC_NAME).plain_classes == list(
            builtin_class_list("ade150", "plain").names
        )
        for name in NAMES:
            with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
                DatasetCatalog.get(name)
    finally:
        unregister(NAMES)
