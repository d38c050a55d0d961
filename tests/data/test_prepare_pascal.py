"""The Pascal prepare scripts (PC-59/459, PAS-20/21) and registration, on tiny fake downloads."""

import importlib.util
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
from maft_plus.data.vocabulary import read_builtin_vocabulary, read_vocabulary_file

REPO = Path(__file__).resolve().parents[2]
VAL_IDS = ["2008_000002", "2008_000007", "2009_000013", "2010_000021"]
TRAIN_IDS = ["2008_000005"]  # in JPEGImages but not in the validation split
PC59 = read_builtin_vocabulary("pc59")
# A labels.txt in the real format: the 59 PC-59 names among others, sorted by name as in the
# release, so PC-59 ids are not a constant shift of labels; "potted plant" is spelled with a space.
OTHER_LABELS = ["accordion", "air conditioner", "ashtray", "kite", "zebra"]
LABEL_NAMES = sorted([n if n != "pottedplant" else "potted plant" for n in PC59] + OTHER_LABELS)
L = len(LABEL_NAMES)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_pascal_context = load_script("prepare_pascal_context")
prepare_pascal_voc = load_script("prepare_pascal_voc")


def image_shape(i: int) -> tuple[int, int]:
    return 10 + i, 14 + 2 * i  # (H, W), different per image so a mismatched pair is caught


def write_jpg(path: Path, shape: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_pascal_context(root: Path) -> dict[str, np.ndarray]:
    """A fake VOC2010 + PASCAL-Context download; returns the LabelMap of each validation id."""
    voc = root / "VOCdevkit/VOC2010"
    context = voc / "pascal_context"
    (voc / "ImageSets/Main").mkdir(parents=True)
    (voc / "ImageSets/Main/val.txt").write_text("\n".join(VAL_IDS) + "\n")
    (context / "trainval").mkdir(parents=True)
    lines = [f"{k}: {name}" for k, name in enumerate(LABEL_NAMES, start=1)]
    (context / "labels.txt").write_text("\n".join(lines) + "\n")
    label_maps = {}
    for i, image_id in enumerate(VAL_IDS + TRAIN_IDS):
        shape = image_shape(i)
        write_jpg(voc / "JPEGImages" / f"{image_id}.jpg", shape, seed=i)
        label_map = np.random.default_rng(i).integers(0, L + 1, shape).astype(np.uint16)
        label_map[0, :3] = (0, 1, L)  # unlabeled, the first and the last label
        scipy.io.savemat(context / "trainval" / f"{image_id}.mat", {"LabelMap": label_map})
        label_maps[image_id] = label_map
    return {image_id: label_maps[image_id] for image_id in VAL_IDS}


def write_pascal_voc(root: Path) -> dict[str, np.ndarray]:
    """A fake VOC2012 segmentation download; returns the class indices of each validation id."""
    voc = root / "VOCdevkit/VOC2012"
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(VAL_IDS) + "\n")
    (voc / "SegmentationClass").mkdir(parents=True)
    palette = np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8)
    classes = {}
    for i, image_id in enumerate(VAL_IDS + TRAIN_IDS):
        shape = image_shape(i)
        write_jpg(voc / "JPEGImages" / f"{image_id}.jpg", shape, seed=100 + i)
        indices = np.random.default_rng(100 + i).integers(0, 21, shape).astype(np.uint8)
        indices[0, :3] = (0, 1, 20)
        indices[-1, :] = 255  # an object boundary
        png = Image.fromarray(indices, mode="P")
        png.putpalette(palette.tolist())
        png.save(voc / "SegmentationClass" / f"{image_id}.png")
        classes[image_id] = indices
    return {image_id: classes[image_id] for image_id in VAL_IDS}


def run_context(root: Path) -> None:
    prepare_pascal_context.main(["--root", str(root), "--expected-val-images", str(len(VAL_IDS))])


def run_voc(root: Path) -> None:
    prepare_pascal_voc.main(["--root", str(root), "--expected-val-images", str(len(VAL_IDS))])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pascal")
    label_maps = write_pascal_context(root)
    voc_classes = write_pascal_voc(root)
    run_context(root)
    run_voc(root)
    return root, label_maps, voc_classes


@pytest.fixture
def registered(prepared):
    root = prepared[0]
    names = register_pascal(root)
    yield names
    unregister(names)


def expected_pc59(label_map: np.ndarray) -> np.ndarray:
    """Independent of the script: label k is labels.txt line k; its PC-59 id by name, else 255."""
    pc59_ids = {name: k for k, name in enumerate(PC59)}
    pc59_ids["potted plant"] = pc59_ids["pottedplant"]
    table = [255] + [pc59_ids.get(name, 255) for name in LABEL_NAMES]
    return np.array(table, dtype=np.uint8)[label_map]


def test_pascal_context_labels(prepared):
    root, label_maps, _ = prepared
    voc = root / "VOCdevkit/VOC2010"
    for image_id, label_map in label_maps.items():
        with Image.open(voc / f"annotations_detectron2/pc459_val/{image_id}.tif") as tif:
            assert tif.mode == "I;16"
            pc459 = np.array(tif)
        expected = np.where(label_map == 0, 65535, label_map.astype(np.int64) - 1)
        np.testing.assert_array_equal(pc459, expected)
        assert pc459.max() == 65535 and pc459.min() == 0 and L - 1 in pc459
        with Image.open(voc / f"annotations_detectron2/pc59_val/{image_id}.png") as png:
            assert png.mode == "L"
            pc59 = np.array(png)
        np.testing.assert_array_equal(pc59, expected_pc59(label_map))
        assert pc59[0, 0] == 255  # unlabeled
        assert pc59[0, 1] == 255  # "accordion": not a PC-59 class
    # the hand-checked cases: aeroplane is label 2 and PC-59 class 0, wood the last class (58)
    assert LABEL_NAMES[1] == "aeroplane" and expected_pc59(np.array([2]))[0] == 0
    wood = LABEL_NAMES.index("wood") + 1
    assert expected_pc59(np.array([wood]))[0] == 58


def test_pascal_context_images_are_links_of_val_ids_only(prepared):
    root = prepared[0]
    voc = root / "VOCdevkit/VOC2010"
    linked = sorted(p.stem for p in (voc / "images_detectron2/val").iterdir())
    assert linked == sorted(VAL_IDS)
    for image_id in VAL_IDS:
        link = voc / f"images_detectron2/val/{image_id}.jpg"
        assert link.samefile(voc / f"JPEGImages/{image_id}.jpg")


def test_pc459_vocabulary_file(prepared):
    path = prepared[0] / "VOCdevkit/VOC2010/pascal_context/maftp_pc459_vocabulary.txt"
    lines = path.read_text().splitlines()
    assert lines[0] == "0:invalid_class_id"
    assert lines[1:] == [f"{k}:{name}" for k, name in enumerate(LABEL_NAMES, start=1)]
    assert read_vocabulary_file(path) == LABEL_NAMES


def test_pascal_voc_labels(prepared):
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
    assert linked == sorted(VAL_IDS)
    assert (voc / f"images_detectron2/val/{VAL_IDS[0]}.jpg").samefile(
        voc / f"JPEGImages/{VAL_IDS[0]}.jpg"
    )


@pytest.mark.parametrize(
    "name, label_dir, suffix, ignore, vocabulary",
    [
        ("maftp_pc59_val", "VOC2010/annotations_detectron2/pc59_val", "png", 255, PC59),
        ("maftp_pc459_val", "VOC2010/annotations_detectron2/pc459_val", "tif", 65535, LABEL_NAMES),
        ("maftp_pas20_val", "VOC2012/annotations_detectron2/pas20_val", "png", 255, "voc20"),
        ("maftp_pas21_val", "VOC2012/annotations_detectron2/pas21_val", "png", 255, "voc21"),
    ],
)
def test_registered_datasets(prepared, registered, name, label_dir, suffix, ignore, vocabulary):
    root = prepared[0]
    assert registered == list(PASCAL_DATASETS)
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == len(VAL_IDS)
    image_dir = root / "VOCdevkit" / label_dir.split("/")[0] / "images_detectron2/val"
    for record, image_id in zip(dicts, sorted(VAL_IDS), strict=True):
        assert record["file_name"] == str(image_dir / f"{image_id}.jpg")
        assert record["sem_seg_file_name"] == str(
            root / "VOCdevkit" / label_dir / f"{image_id}.{suffix}"
        )
        # read the way detectron2's DatasetMapper does: same shape as the image, ignore value intact
        labels = read_image(record["sem_seg_file_name"]).astype("double")
        assert labels.shape == read_image(record["file_name"]).shape[:2]
        assert ignore in labels
    metadata = MetadataCatalog.get(name)
    classes = read_builtin_vocabulary(vocabulary) if isinstance(vocabulary, str) else vocabulary
    assert metadata.stuff_classes == classes
    assert metadata.ignore_label == ignore
    assert metadata.evaluator_type == "sem_seg"


def test_rerun_is_harmless(prepared):
    root, label_maps, _ = prepared
    outputs = sorted(p for p in (root / "VOCdevkit").rglob("*_detectron2/**/*") if p.is_file())
    assert len(outputs) == 6 * len(VAL_IDS)  # 2 image-link and 4 label folders
    outputs.append(root / "VOCdevkit/VOC2010/pascal_context/maftp_pc459_vocabulary.txt")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    run_context(root)
    run_voc(root)
    after = sorted(p for p in (root / "VOCdevkit").rglob("*_detectron2/**/*") if p.is_file())
    after.append(root / "VOCdevkit/VOC2010/pascal_context/maftp_pc459_vocabulary.txt")
    assert after == outputs
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in after} == before  # all skipped
    assert not list((root / "VOCdevkit").rglob("*.tmp"))


@pytest.fixture
def fresh_root(tmp_path: Path) -> Path:
    write_pascal_context(tmp_path)
    write_pascal_voc(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "missing, run",
    [
        ("VOC2010/JPEGImages", run_context),
        (f"VOC2010/JPEGImages/{VAL_IDS[2]}.jpg", run_context),
        ("VOC2010/ImageSets/Main/val.txt", run_context),
        ("VOC2010/pascal_context/trainval", run_context),
        (f"VOC2010/pascal_context/trainval/{VAL_IDS[1]}.mat", run_context),
        ("VOC2010/pascal_context/labels.txt", run_context),
        ("VOC2012/JPEGImages", run_voc),
        ("VOC2012/SegmentationClass", run_voc),
        (f"VOC2012/SegmentationClass/{VAL_IDS[3]}.png", run_voc),
        ("VOC2012/ImageSets/Segmentation/val.txt", run_voc),
    ],
)
def test_missing_input_is_named(fresh_root, missing, run):
    path = fresh_root / "VOCdevkit" / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        run(fresh_root)


def test_missing_pc59_class_is_named(fresh_root):
    labels = fresh_root / "VOCdevkit/VOC2010/pascal_context/labels.txt"
    names = [name for name in LABEL_NAMES if name != "sidewalk"]
    labels.write_text("".join(f"{k}: {name}\n" for k, name in enumerate(names, start=1)))
    with pytest.raises(ValueError, match="'sidewalk'"):
        run_context(fresh_root)


def test_label_out_of_range(fresh_root):
    mat = fresh_root / f"VOCdevkit/VOC2010/pascal_context/trainval/{VAL_IDS[0]}.mat"
    scipy.io.savemat(mat, {"LabelMap": np.full(image_shape(0), L + 1, dtype=np.uint16)})
    with pytest.raises(ValueError, match=re.escape(str(mat)) + f".*0\\.\\.{L}"):
        run_context(fresh_root)


def test_voc_rgb_label_is_refused(fresh_root):
    png = fresh_root / f"VOCdevkit/VOC2012/SegmentationClass/{VAL_IDS[0]}.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(ValueError, match="palette"):
        run_voc(fresh_root)


@pytest.mark.parametrize("run", [run_context, run_voc])
def test_wrong_count_is_refused(fresh_root, run):
    with pytest.raises(RuntimeError, match="expected"):
        prepare = prepare_pascal_context if run is run_context else prepare_pascal_voc
        prepare.main(["--root", str(fresh_root)])  # the real counts: 5105 / 1449


def test_unprepared_datasets_register_and_fail_clearly(tmp_path):
    names = register_pascal(tmp_path)
    try:
        assert MetadataCatalog.get("maftp_pc459_val").stuff_classes == []
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
