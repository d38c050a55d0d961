"""The ADE20K prepare scripts (A-150, A-847, panoptic) on tiny fake downloads, then registered."""

import importlib.util
import json
import logging
import pickle
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

REPO = Path(__file__).resolve().parents[2]
NAMES = [ADE150_NAME, ADE847_NAME, ADE_PANOPTIC_NAME]


def load_script(name: str):
    """A ``datasets/<name>.py`` script as a module (``datasets/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_ade_{name}", REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ADE150 = load_script("prepare_ade20k_150")
ADE847 = load_script("prepare_ade20k_847")
PANOPTIC = load_script("prepare_ade20k_panoptic")

# Scene-parsing labels: wall (1) and floor (4) are stuff; person (13), car (21), bed (8) things.
WALL, FLOOR, BED, PERSON, CAR = 1, 4, 8, 13, 21
PERSON_R, CAR_R, BED_R = 5, 7, 9  # their instance-challenge classes (R of the instance pngs)
VAL_SEMANTIC = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 13, 13, 1, 1, 13, 13, 1],
        [1, 13, 13, 1, 1, 13, 13, 1],
        [4, 4, 4, 4, 4, 4, 8, 8],  # bed, without an instance: unlabeled in panoptic
        [4, 4, 4, 4, 4, 4, 0, 0],
        [1, 1, 4, 4, 21, 21, 4, 4],  # a second wall region: same stuff segment
    ],
    dtype=np.uint8,
)
# (R, G) instance -> its pixels; person 1 also covers a wall pixel, (5, 3) mostly covers floor
VAL_INSTANCES = {
    (PERSON_R, 1): [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2)],
    (PERSON_R, 2): [(1, 5), (1, 6), (2, 5), (2, 6)],
    (PERSON_R, 3): [(4, 0), (4, 1)],  # majority floor (stuff): dropped
    (CAR_R, 1): [(5, 4), (5, 5)],
}


def instance_png(shape: tuple[int, int], instances: dict) -> np.ndarray:
    rgb = np.zeros((*shape, 3), dtype=np.uint8)
    rgb[..., 2] = 77  # B is unused
    for (red, green), pixels in instances.items():
        for y, x in pixels:
            rgb[y, x, :2] = red, green
    return rgb


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_scene_parsing(root: Path) -> list[np.ndarray]:
    """ADEChallengeData2016 with 3 val images (+ instances) and 1 training image; val labels."""
    ade = root / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    full_wall = np.full((6, 8), WALL, dtype=np.uint8)
    full_wall[0, 0] = 150  # the last class
    with_person = np.full((6, 8), FLOOR, dtype=np.uint8)
    with_person[2:4, 2:4] = PERSON
    val = [
        (VAL_SEMANTIC, VAL_INSTANCES),
        (full_wall, {}),
        (with_person, {(PERSON_R, 4): [(2, 2), (2, 3), (3, 2), (3, 3)]}),
    ]
    for i, (semantic, instances) in enumerate(val, start=1):
        stem = f"ADE_val_{i:08d}"
        save(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), ade / f"images/validation/{stem}.jpg")
        save(semantic, ade / f"annotations/validation/{stem}.png")
        save(
            instance_png(semantic.shape, instances),
            ade / f"annotations_instance/validation/{stem}.png",
        )
    # bed has instances only in training; it is a thing all the same
    train = np.full((4, 4), FLOOR, dtype=np.uint8)
    train[:2, :2] = BED
    save(train, ade / "annotations/training/ADE_train_00000001.png")
    bed = {(BED_R, 1): [(0, 0), (0, 1), (1, 0), (1, 1)]}
    save(
        instance_png(train.shape, bed), ade / "annotations_instance/training/ADE_train_00000001.png"
    )
    return [semantic for semantic, _ in val]


# ADE20K full: 300 object names; codes 1 (wall), 2 (person), 260 (lamp) are in both splits,
# 3 (tree) only in training, 4 (car) and 5 only in validation.
OBJECT_NAMES = [f"object {k}" for k in range(300)]
OBJECT_NAMES[:4] = ["wall", "person, individual, someone", "tree", "car, auto, automobile"]
OBJECT_NAMES[259] = "lamp"
# (folder, file name, object codes present); training and validation interleaved
FULL_IMAGES = [
    ("training/urban/street", "ADE_train_00000001", [1, 3]),
    ("validation/urban/street", "ADE_val_00000001", [1, 4, 260, 5]),
    ("training/home/kitchen", "ADE_train_00000002", [2, 260]),
    ("validation/home/kitchen", "ADE_val_00000002", [2]),
]
FULL_VOCABULARY = "0:invalid_class_id\n1:wall\n2:person,individual,someone\n3:lamp\n"
FULL_CODES = np.array([[0, 1, 1, 2, 260], [5, 4, 260, 1, 0], [2, 2, 2, 0, 1]])  # of ADE_val_1
FULL_EXPECTED = np.array(
    [[65535, 0, 0, 1, 2], [65535, 65535, 2, 0, 65535], [1, 1, 1, 65535, 0]], dtype=np.uint16
)


def write_full(root: Path) -> None:
    """ADE20K_2021_17_01 with 2 training and 2 validation images and its index."""
    ade = root / "ADE20K_2021_17_01"
    presence = np.zeros((len(OBJECT_NAMES), len(FULL_IMAGES)), dtype=np.int64)
    rng = np.random.default_rng(1)
    for column, (folder, stem, codes) in enumerate(FULL_IMAGES):
        presence[np.array(codes) - 1, column] = 2
        image_folder = ade / "images/ADE" / folder
        save(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8), image_folder / f"{stem}.jpg")
        codes_map = FULL_CODES if stem == "ADE_val_00000001" else np.full((3, 5), codes[0])
        seg = np.zeros((*codes_map.shape, 3), dtype=np.uint8)
        seg[..., 0] = codes_map // 256 * 10 + 3  # R // 10 * 256 + G; R % 10 carries no class
        seg[..., 1] = codes_map % 256
        seg[..., 2] = 9  # instance masks, not read
        save(seg, image_folder / f"{stem}_seg.png")
    index = {
        "filename": [f"{stem}.jpg" for _, stem, _ in FULL_IMAGES],
        "folder": [f"ADE20K_2021_17_01/images/ADE/{folder}" for folder, _, _ in FULL_IMAGES],
        "objectnames": OBJECT_NAMES,
        "objectPresence": presence,
    }
    with (ade / "index_ade20k.pkl").open("wb") as f:
        pickle.dump(index, f)


@pytest.fixture
def root(tmp_path: Path):
    """A datasets root holding both fake downloads; the ADE names are unregistered afterwards."""
    write_scene_parsing(tmp_path)
    write_full(tmp_path)
    yield tmp_path
    unregister(NAMES)


def prepare_all(root: Path) -> None:
    ADE150.main(["--root", str(root), "--expected-val-images", "3"])
    ADE847.main(["--root", str(root), "--expected-val-images", "2"])
    PANOPTIC.main(["--root", str(root), "--expected-val-images", "3"])


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_ade150_labels_shift_by_one_and_other_is_ignored(root):
    semantics = write_scene_parsing(root)
    ADE150.main(["--root", str(root), "--expected-val-images", "3"])
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


def test_ade847_vocabulary_and_uint16_labels(root, caplog):
    with caplog.at_level(logging.WARNING):
        ADE847.main(["--root", str(root), "--expected-val-images", "2"])
    assert "found 3 classes" in caplog.text  # not 847: warned, not fatal
    assert (root / ADE847_VOCABULARY).read_text(encoding="utf-8") == FULL_VOCABULARY
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
    np.testing.assert_array_equal(labels, FULL_EXPECTED)
    np.testing.assert_array_equal(read(dicts[1]["sem_seg_file_name"]), np.full((3, 5), 1))
    source = root / "ADE20K_2021_17_01/images/ADE/validation/urban/street/ADE_val_00000001.jpg"
    assert Path(dicts[0]["file_name"]).samefile(source)  # a hard link, not a copy
    assert Path(dicts[0]["file_name"]).parent == root / ADE847_IMAGES


def test_ade847_split_comes_from_the_folder(root):
    """An image in a validation folder counts as validation whatever its position in the index."""
    names, presence, _, splits = ADE847.read_index(root / "ADE20K_2021_17_01/index_ade20k.pkl")
    assert splits == ["training", "validation", "training", "validation"]
    np.testing.assert_array_equal(ADE847.select_classes(presence, splits), [0, 1, 259])
    assert ADE847.image_split("elsewhere", "ADE_val_00000009.jpg") == "validation"


def test_panoptic_segments(root):
    PANOPTIC.main(["--root", str(root), "--expected-val-images", "3"])
    categories = json.loads((root / ADE_PANOPTIC_CATEGORIES).read_text(encoding="utf-8"))
    assert [c["id"] for c in categories if c["isthing"]] == [BED, PERSON, CAR]
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
        WALL * 1000: (WALL, 17),  # two regions, one segment, minus the pixel of person 1
        FLOOR * 1000: (FLOOR, 16),  # with the pixels of the dropped instance
        PERSON * 1000: (PERSON, 5),
        PERSON * 1000 + 1: (PERSON, 4),
        CAR * 1000: (CAR, 2),
    }
    assert ids[0, 1] == PERSON * 1000  # the wall pixel inside person 1
    assert (ids[3:5, 6:8] == 0).all()  # bed without an instance, and "other"
    assert segments[WALL * 1000]["bbox"] == [0, 0, 8, 6]


def test_panoptic_registration_loads_dicts(root):
    PANOPTIC.main(["--root", str(root), "--expected-val-images", "3"])
    register_ade(root)
    dicts = DatasetCatalog.get(ADE_PANOPTIC_NAME)
    assert len(dicts) == 3
    metadata = MetadataCatalog.get(ADE_PANOPTIC_NAME)
    assert metadata.stuff_classes == read_builtin_vocabulary("ade150")
    assert [k for k, flag in enumerate(metadata.is_thing) if flag] == [BED - 1, PERSON - 1, CAR - 1]
    record = dicts[0]
    assert Path(record["file_name"]).name == "ADE_val_00000001.jpg"
    assert Path(record["sem_seg_file_name"]).parent == root / ADE_PANOPTIC_SEMSEG
    assert (record["height"], record["width"]) == (6, 8)
    contiguous = {s["category_id"]: s["isthing"] for s in record["segments_info"]}
    assert contiguous == {WALL - 1: False, FLOOR - 1: False, PERSON - 1: True, CAR - 1: True}


def output_files(root: Path) -> dict[Path, tuple[int, bytes]]:
    outputs = [ADE150_LABELS, ADE847_IMAGES, ADE847_LABELS, ADE847_VOCABULARY, ADE_PANOPTIC_PNGS]
    outputs += [ADE_PANOPTIC_SEMSEG, ADE_PANOPTIC_JSON, ADE_PANOPTIC_CATEGORIES]
    files = {}
    for output in outputs:
        path = root / output
        for file in [path] if path.is_file() else sorted(path.iterdir()):
            files[file] = (file.stat().st_mtime_ns, file.read_bytes())
    return files


def test_rerunning_skips_up_to_date_files(root, capsys):
    prepare_all(root)
    first = output_files(root)
    assert len(first) == 3 + 2 + 2 + 1 + 3 + 3 + 1 + 1
    capsys.readouterr()
    prepare_all(root)
    assert output_files(root) == first  # same bytes, same modification times
    summaries = capsys.readouterr().out.splitlines()
    assert len(summaries) == 3
    assert all("(0 converted" in line for line in summaries), summaries


@pytest.mark.parametrize("script", [ADE150, ADE847, PANOPTIC])
def test_missing_download_names_the_folder(tmp_path, script):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "ADE"))):
        script.main(["--root", str(tmp_path)])


def test_missing_instances_name_the_file(root):
    instance = root / "ADEChallengeData2016/annotations_instance/validation/ADE_val_00000002.png"
    instance.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(instance))):
        PANOPTIC.main(["--root", str(root), "--expected-val-images", "3"])


def test_wrong_image_count_is_an_error(root):
    with pytest.raises(RuntimeError, match="expected 2000 files"):
        ADE150.main(["--root", str(root)])


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


def test_missing_vocabulary_is_named(root):
    ADE847.main(["--root", str(root), "--expected-val-images", "2"])
    (root / ADE847_VOCABULARY).unlink()
    register_ade(root)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / ADE847_VOCABULARY))):
        DatasetCatalog.get(ADE847_NAME)
