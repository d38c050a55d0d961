"""The Pascal prepare scripts (PC-59/459, PAS-20/21) and registration, on tiny fake downloads."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from PIL import Image

from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.register_pascal import PASCAL_DATASETS, register_pascal
from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary

PC59 = read_builtin_vocabulary("pc59", "plain")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, fake_pascal):
    root = tmp_path_factory.mktemp("pascal")
    label_maps = fake_pascal.write_context(root)
    voc_classes = fake_pascal.write_voc(root)
    fake_pascal.prepare(root)
    return root, label_maps, voc_classes


@pytest.fixture
def registered(prepared):
    root = prepared[0]
    names = register_pascal(root)
    yield names
    unregister(names)


def expected_pc59(label_map: np.ndarray, label_names: list[str]) -> np.ndarray:
    """Independent of the script: label k is labels.txt line k; its PC-59 id by name, else 255."""
    pc59_ids = {name: k for k, name in enumerate(PC59)}
    pc59_ids["potted plant"] = pc59_ids["pottedplant"]
    table = [255] + [pc59_ids.get(name, 255) for name in label_names]
    return np.array(table, dtype=np.uint8)[label_map]


def test_pascal_context_labels(prepared, fake_pascal):
    root, label_maps, _ = prepared
    label_names = fake_pascal.LABEL_NAMES
    voc = root / "VOCdevkit/VOC2010"
    for image_id, label_map in label_maps.items():
        with Image.open(voc / f"annotations_detectron2/pc459_val/{image_id}.tif") as tif:
            assert tif.mode == "I;16"
            pc459 = np.array(tif)
        expected = np.where(label_map == 0, 65535, label_map.astype(np.int64) - 1)
        np.testing.assert_array_equal(pc459, expected)
        assert pc459.max() == 65535 and pc459.min() == 0 and len(label_names) - 1 in pc459
        with Image.open(voc / f"annotations_detectron2/pc59_val/{image_id}.png") as png:
            assert png.mode == "L"
            pc59 = np.array(png)
        np.testing.assert_array_equal(pc59, expected_pc59(label_map, label_names))
        assert pc59[0, 0] == 255  # unlabeled
        assert pc59[0, 1] == 255  # "accordion": not a PC-59 class
    # the hand-checked cases: aeroplane is label 2 and PC-59 class 0, wood the last class (58)
    assert label_names[1] == "aeroplane" and expected_pc59(np.array([2]), label_names)[0] == 0
    wood = label_names.index("wood") + 1
    assert expected_pc59(np.array([wood]), label_names)[0] == 58


def test_pascal_context_images_are_links_of_val_ids_only(prepared, fake_pascal):
    root = prepared[0]
    voc = root / "VOCdevkit/VOC2010"
    linked = sorted(p.stem for p in (voc / "images_detectron2/val").iterdir())
    assert linked == sorted(fake_pascal.VAL_IDS)
    for image_id in fake_pascal.VAL_IDS:
        link = voc / f"images_detectron2/val/{image_id}.jpg"
        assert link.samefile(voc / f"JPEGImages/{image_id}.jpg")


def test_a_labels_file_unlike_the_shipped_list_is_reported(tmp_path, fake_pascal, caplog):
    fake_pascal.write_context(tmp_path)
    labels = tmp_path / "VOCdevkit/VOC2010/pascal_context/labels.txt"
    names = list(fake_pascal.LABEL_NAMES)
    names[2] = "air-conditioning unit"  # label 3
    labels.write_text("".join(f"{k}: {name}\n" for k, name in enumerate(names, start=1)))
    with caplog.at_level("WARNING"):
        fake_pascal.prepare_context(tmp_path)
    assert f"{labels} lists 459 labels" in caplog.text and "first differing label: 3" in caplog.text


def test_pascal_voc_labels(prepared, fake_pascal):
    root, _, voc_classes = prepared
    voc = root / "VOCdevkit/VOC2012"
    for image_id, classes in voc_classes.items():
        pas21 = np.array(Image.open(voc / f"annotations_detectron2/pas21_val/{image_id}.png"))
        np.testing.assert_array_equal(pas21, classes)
        pas20 = np.array(Image.open(voc / f"annotations_detectron2/pas20_val/{image_id}.png"))
        expected = np.where((classes == 0) | (classes == 255), 255, classes.astype(int) - 1)
        np.testing.assert_array_equal(pas20, expected)
        assert pas20[0, :3].tolist() == [255, 0, 19] and (pas20[-1] == 255).all()
    linked = sorted(p.stem for p in (voc / "images_detectron2/val").iterdir())
    assert linked == sorted(fake_pascal.VAL_IDS)
    first = fake_pascal.VAL_IDS[0]
    assert (voc / f"images_detectron2/val/{first}.jpg").samefile(voc / f"JPEGImages/{first}.jpg")


@pytest.mark.parametrize(
    "name, label_dir, suffix, ignore, vocabulary",
    [
        ("maftp_pc59_val", "VOC2010/annotations_detectron2/pc59_val", "png", 255, "pc59"),
        ("maftp_pc459_val", "VOC2010/annotations_detectron2/pc459_val", "tif", 65535, "pc459"),
        ("maftp_pas20_val", "VOC2012/annotations_detectron2/pas20_val", "png", 255, "voc20"),
        ("maftp_pas21_val", "VOC2012/annotations_detectron2/pas21_val", "png", 255, "voc21"),
    ],
)
def test_registered_datasets(
    prepared, registered, fake_pascal, name, label_dir, suffix, ignore, vocabulary
):
    """``vocabulary``: the shipped class lists of the dataset."""
    root = prepared[0]
    val_ids = fake_pascal.VAL_IDS
    assert registered == list(PASCAL_DATASETS)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == len(val_ids)
    image_dir = root / "VOCdevkit" / label_dir.split("/")[0] / "images_detectron2/val"
    for record, image_id in zip(dicts, sorted(val_ids), strict=True):
        assert record["file_name"] == str(image_dir / f"{image_id}.jpg")
        assert record["sem_seg_file_name"] == str(
            root / "VOCdevkit" / label_dir / f"{image_id}.{suffix}"
        )
        # read the way detectron2's DatasetMapper does: same shape as the image, ignore value intact
        labels = read_image(record["sem_seg_file_name"]).astype("double")
        assert labels.shape == read_image(record["file_name"]).shape[:2]
        assert ignore in labels
    metadata = MetadataCatalog.get(name)
    assert metadata.stuff_classes == read_builtin_vocabulary(vocabulary)
    assert metadata.plain_classes == read_builtin_vocabulary(vocabulary, "plain")
    assert metadata.ignore_label == ignore
    assert metadata.evaluator_type == "sem_seg"


def test_rerun_is_harmless(prepared, fake_pascal):
    root = prepared[0]
    outputs = sorted(p for p in (root / "VOCdevkit").rglob("*_detectron2/**/*") if p.is_file())
    assert len(outputs) == 6 * len(fake_pascal.VAL_IDS)  # 2 image-link and 4 label folders
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    fake_pascal.prepare(root)
    after = sorted(p for p in (root / "VOCdevkit").rglob("*_detectron2/**/*") if p.is_file())
    assert after == outputs
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in after} == before  # all skipped
    assert not list((root / "VOCdevkit").rglob("*.tmp"))


@pytest.fixture
def fresh_root(tmp_path: Path, fake_pascal) -> Path:
    fake_pascal.write(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "missing, script",
    [
        ("VOC2010/JPEGImages", "context"),
        ("VOC2010/JPEGImages/{val_ids[2]}.jpg", "context"),
        ("VOC2010/ImageSets/Main/val.txt", "context"),
        ("VOC2010/pascal_context/trainval", "context"),
        ("VOC2010/pascal_context/trainval/{val_ids[1]}.mat", "context"),
        ("VOC2010/pascal_context/labels.txt", "context"),
        ("VOC2012/JPEGImages", "voc"),
        ("VOC2012/SegmentationClass", "voc"),
        ("VOC2012/SegmentationClass/{val_ids[3]}.png", "voc"),
        ("VOC2012/ImageSets/Segmentation/val.txt", "voc"),
    ],
)
def test_missing_input_is_named(fresh_root, fake_pascal, missing, script):
    path = fresh_root / "VOCdevkit" / missing.format(val_ids=fake_pascal.VAL_IDS)
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        getattr(fake_pascal, f"prepare_{script}")(fresh_root)


def test_missing_pc59_class_is_named(fresh_root, fake_pascal):
    labels = fresh_root / "VOCdevkit/VOC2010/pascal_context/labels.txt"
    names = [name for name in fake_pascal.LABEL_NAMES if name != "sidewalk"]
    labels.write_text("".join(f"{k}: {name}\n" for k, name in enumerate(names, start=1)))
    with pytest.raises(ValueError, match="'sidewalk'"):
        fake_pascal.prepare_context(fresh_root)


def test_label_out_of_range(fresh_root, fake_pascal):
    mat = fresh_root / f"VOCdevkit/VOC2010/pascal_context/trainval/{fake_pascal.VAL_IDS[0]}.mat"
    num_labels = len(fake_pascal.LABEL_NAMES)
    label_map = np.full(fake_pascal.image_shape(0), num_labels + 1, dtype=np.uint16)
    scipy.io.savemat(mat, {"LabelMap": label_map})
    with pytest.raises(ValueError, match=re.escape(str(mat)) + f".*0\\.\\.{num_labels}"):
        fake_pascal.prepare_context(fresh_root)


def test_voc_rgb_label_is_refused(fresh_root, fake_pascal):
    png = fresh_root / f"VOCdevkit/VOC2012/SegmentationClass/{fake_pascal.VAL_IDS[0]}.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(ValueError, match="palette"):
        fake_pascal.prepare_voc(fresh_root)


@pytest.mark.parametrize(("script", "real"), [("context_script", 5105), ("voc_script", 1449)])
def test_wrong_count_is_refused(fresh_root, fake_pascal, script, real):
    with pytest.raises(
        RuntimeError, match=f"lists {len(fake_pascal.VAL_IDS)} ids, expected {real}"
    ):
        getattr(fake_pascal, script).main(["--root", str(fresh_root)])


def test_unprepared_datasets_register_and_fail_clearly(tmp_path):
    names = register_pascal(tmp_path)
    try:
        assert len(MetadataCatalog.get("maftp_pc459_val").stuff_classes) == 459
        scripts = {
            "maftp_pc59_val": "prepare_pascal_context.py",
            "maftp_pc459_val": "prepare_pascal_context.py",
            "maftp_pas20_val": "prepare_pascal_voc.py",
            "maftp_pas21_val": "prepare_pascal_voc.py",
        }
        for name in names:
            with pytest.raises(FileNotFoundError) as error:
                DatasetCatalog.get(name)
            assert str(tmp_path / "VOCdevkit") in str(error.value)
            assert f"datasets/{scripts[name]}" in str(error.value)
    finally:
        unregister(names)
