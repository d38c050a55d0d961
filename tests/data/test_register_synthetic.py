"""Registering the synthetic dataset in detectron2's DatasetCatalog / MetadataCatalog."""

import shutil
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.synthetic import (
    SYNTHETIC_CLASSES,
    synthetic_class_names,
    write_synthetic_dataset,
)

PREFIX = "test_register_synthetic"
K = len(SYNTHETIC_CLASSES)
NUM = {"train": 5, "val": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_train=NUM["train"], num_val=NUM["val"], image_size=48)
    return root


@pytest.fixture
def names(root: Path):
    names = register_synthetic(root, prefix=PREFIX)
    yield names
    unregister(names)


def test_registers_four_datasets(names):
    assert names == [
        f"{PREFIX}_sem_seg_train",
        f"{PREFIX}_sem_seg_val",
        f"{PREFIX}_panoptic_train",
        f"{PREFIX}_panoptic_val",
    ]
    assert set(names) <= set(DatasetCatalog.list())


@pytest.mark.parametrize("split", ["train", "val"])
def test_semantic_dicts(names, root, split):
    dicts = DatasetCatalog.get(f"{PREFIX}_sem_seg_{split}")
    assert len(dicts) == NUM[split]
    for i, record in enumerate(dicts):
        assert record["file_name"] == str(root / "images" / split / f"{i:05d}.jpg")
        assert record["sem_seg_file_name"] == str(root / "annotations" / split / f"{i:05d}.png")
    metadata = MetadataCatalog.get(f"{PREFIX}_sem_seg_{split}")
    assert metadata.stuff_classes == list(synthetic_class_names())
    assert metadata.stuff_classes[0] == "circle, round shape"
    assert metadata.is_thing == [is_thing for _, is_thing in SYNTHETIC_CLASSES]
    assert metadata.ignore_label == 255
    assert metadata.evaluator_type == "sem_seg"
    assert len(metadata.stuff_colors) == K


@pytest.mark.parametrize("split", ["train", "val"])
def test_panoptic_dicts(names, root, split):
    dicts = DatasetCatalog.get(f"{PREFIX}_panoptic_{split}")
    assert len(dicts) == NUM[split]
    metadata = MetadataCatalog.get(f"{PREFIX}_panoptic_{split}")
    for i, record in enumerate(dicts):
        assert record["file_name"] == str(root / "images" / split / f"{i:05d}.jpg")
        assert record["image_id"] == i
        assert record["pan_seg_file_name"] == str(root / f"panoptic_{split}" / f"{i:05d}.png")
        assert record["sem_seg_file_name"] == str(root / f"panoptic_semseg_{split}/{i:05d}.png")
        assert (record["height"], record["width"]) == (48, 48)
        assert Path(record["sem_seg_file_name"]).is_file()
        assert record["segments_info"]
        for segment in record["segments_info"]:
            k = segment["category_id"]
            assert 0 <= k < K  # contiguous
            assert segment["isthing"] == metadata.is_thing[k]
            assert segment["id"] // 1000 == k + 1  # the writer's id scheme: category id * 1000 + i
            assert segment["iscrowd"] == 0 and segment["area"] > 0
    assert metadata.stuff_classes == metadata.thing_classes == list(synthetic_class_names())
    assert metadata.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2, 4: 3}
    assert metadata.stuff_dataset_id_to_contiguous_id == {k + 1: k for k in range(K)}
    assert metadata.ignore_label == 255
    assert metadata.evaluator_type == "coco_panoptic_seg"
    assert metadata.panoptic_root == str(root / f"panoptic_{split}")
    assert metadata.panoptic_json == str(root / f"panoptic_{split}.json")


def test_reregistering_is_harmless_and_follows_the_new_root(names, tmp_path):
    other = tmp_path / "other"
    write_synthetic_dataset(other, num_train=2, num_val=1, image_size=32)
    assert register_synthetic(other, prefix=PREFIX) == names
    assert len(DatasetCatalog.get(f"{PREFIX}_sem_seg_train")) == 2
    assert MetadataCatalog.get(f"{PREFIX}_panoptic_val").panoptic_root == str(
        other / "panoptic_val"
    )


def test_unregister_removes_names(root):
    names = register_synthetic(root, prefix=f"{PREFIX}_gone")
    unregister(names)
    assert not set(names) & set(DatasetCatalog.list())
    assert not set(names) & set(MetadataCatalog.list())
    unregister(names)  # unknown names are skipped


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="write_synthetic_dataset") as info:
        register_synthetic(missing, prefix=f"{PREFIX}_missing")
    assert str(missing) in str(info.value)
    assert f"{PREFIX}_missing_sem_seg_train" not in DatasetCatalog.list()


@pytest.mark.parametrize("relative", ["panoptic_val.json", "annotations/train", "vocabulary.txt"])
def test_missing_file_names_the_path(root, tmp_path, relative):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = copy / relative
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    with pytest.raises(FileNotFoundError, match="write_synthetic_dataset") as info:
        register_synthetic(copy, prefix=f"{PREFIX}_missing")
    assert str(path) in str(info.value)


def test_images_load_at_the_registered_paths(names):
    record = DatasetCatalog.get(f"{PREFIX}_panoptic_val")[0]
    with Image.open(record["file_name"]) as image, Image.open(record["pan_seg_file_name"]) as pan:
        assert image.size == pan.size == (record["width"], record["height"])
