"""Folder datasets: the key=value spec, registration, pairing and the full file check."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maft_plus.data.datasets.check_folder import FolderDatasetError, check_folder_dataset
from maft_plus.data.datasets.register_folder import (
    FolderDataset,
    parse_folder_spec,
    register_folder_dataset,
    register_folder_datasets,
)
from maft_plus.data.synthetic import write_synthetic_dataset
from maft_plus.data.vocabulary.class_lists import read_class_list
from maft_plus.evaluation.loop import build_evaluators
from maft_plus.evaluation.panoptic_evaluation import PanopticSubsetEvaluator

NUM_IMAGES = 4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_dataset(root / "s", num_train=2, num_val=NUM_IMAGES, image_size=48)


@pytest.fixture
def folder(synthetic, tmp_path) -> FolderDataset:
    """The synthetic val split as a user's folder: two images re-saved as png."""
    paths = synthetic.paths("val")
    images, labels = tmp_path / "images", tmp_path / "labels"
    shutil.copytree(paths.images, images)
    shutil.copytree(paths.sem_seg, labels)
    for jpg in sorted(images.glob("*.jpg"))[:2]:
        Image.open(jpg).save(jpg.with_suffix(".png"))
        jpg.unlink()
    classes = tmp_path / "classes.txt"
    shutil.copy(synthetic.vocabulary_file, classes)
    return FolderDataset(name="my_folder", images=images, labels=labels, classes=classes)


def test_a_spec_reads_back_what_it_says(folder):
    assert parse_folder_spec(folder.spec()) == folder
    spaced = parse_folder_spec("name=x images='my images' labels=l classes=c.txt ignore_label=0")
    assert spaced.images == Path("my images") and spaced.ignore_label == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("name=x images=i classes=c", r"missing labels \(or panoptic_json and panoptic_pngs\)"),
        ("name=x images=i labels=l", "missing classes"),
        ("name=x images=i labels=l classes=c colour=red", "unknown key 'colour'"),
        ("name=x images=i labels=l classes=c ignore_label=-1", "expected an integer >= 0"),
        ("name=x images=i labels=l labels=m classes=c", "labels is given twice"),
        ("name=x images=i classes=c panoptic_json=p.json", "missing panoptic_pngs"),
        ("name=x images", "expected key=value words, got 'images'"),
    ],
)
def test_a_bad_spec_is_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_folder_spec(spec)


def test_registration_pairs_images_of_any_format_with_their_labels(folder, synthetic):
    register_folder_datasets([folder.spec()])
    records = DatasetCatalog.get("my_folder")
    assert len(records) == NUM_IMAGES
    for record in records:
        image, label = Path(record["file_name"]), Path(record["sem_seg_file_name"])
        assert image.exists() and label.exists() and image.stem == label.stem
    assert {Path(r["file_name"]).suffix for r in records} == {".jpg", ".png"}
    metadata = MetadataCatalog.get("my_folder")
    assert metadata.stuff_classes == list(read_class_list(folder.classes).names)
    assert len(metadata.stuff_classes) == len(synthetic.class_names)
    assert metadata.ignore_label == 255 and metadata.evaluator_type == "sem_seg"
    assert check_folder_dataset(folder) == NUM_IMAGES


def test_an_image_without_a_label_is_named(folder):
    label = sorted(folder.labels.glob("*.png"))[0]
    label.unlink()
    with pytest.raises(ValueError, match=f"without a label.*no {label}"):
        register_folder_dataset(folder)


def test_a_label_without_an_image_is_named(folder):
    extra = folder.labels / "stray.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(extra)
    with pytest.raises(ValueError, match=f"without an image.*{extra}"):
        register_folder_dataset(folder)


def test_a_missing_folder_is_named(folder, tmp_path):
    missing = FolderDataset(
        name="gone", images=tmp_path / "nope", labels=folder.labels, classes=folder.classes
    )
    with pytest.raises(FileNotFoundError, match="images .*nope not found"):
        register_folder_dataset(missing)


def test_the_check_names_every_bad_label(folder):
    labels = sorted(folder.labels.glob("*.png"))
    Image.fromarray(np.full((48, 48), 9, np.uint8)).save(labels[0])  # 7 classes: 9 is out
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(labels[1])  # wrong size
    labels[2].write_bytes(b"not a png")
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(labels[3])  # RGB, not class ids
    with pytest.raises(FolderDatasetError) as raised:
        check_folder_dataset(folder)
    problems = raised.value.problems
    assert len(problems) == 4
    assert f"label {labels[0]} holds ids [9] outside the class list (0..6" in problems[0]
    assert f"label {labels[1]} is 48x40 (WxH) but its image" in problems[1]
    assert f"label {labels[2]} cannot be read" in problems[2]
    assert f"label {labels[3]} is a RGB png" in problems[3]
    assert "4 problem(s)" in str(raised.value)


def test_the_chosen_ignore_value_is_allowed(folder):
    for label in folder.labels.glob("*.png"):
        ids = np.array(Image.open(label))
        ids[ids == 255] = 200
        Image.fromarray(ids).save(label)
    with pytest.raises(FolderDatasetError, match=r"holds ids \[200\]"):
        check_folder_dataset(folder)
    relabelled = FolderDataset(**{**folder.__dict__, "ignore_label": 200})
    assert check_folder_dataset(relabelled) == NUM_IMAGES


@pytest.fixture
def panoptic_folder(synthetic, tmp_path) -> FolderDataset:
    paths = synthetic.paths("val")
    pngs = tmp_path / "panoptic"
    shutil.copytree(paths.panoptic, pngs)
    json_file = tmp_path / "panoptic.json"
    shutil.copy(paths.panoptic_json, json_file)
    return FolderDataset(
        name="my_panoptic",
        images=paths.images,
        classes=synthetic.vocabulary_file,
        panoptic_json=json_file,
        panoptic_pngs=pngs,
    )


def test_a_panoptic_folder_registers_for_pq_only(panoptic_folder):
    register_folder_dataset(panoptic_folder)
    records = DatasetCatalog.get("my_panoptic")
    assert len(records) == NUM_IMAGES
    assert all("sem_seg_file_name" not in r and Path(r["file_name"]).exists() for r in records)
    evaluators = build_evaluators("my_panoptic", semantic_on=True, panoptic_on=True)
    assert [type(e) for e in evaluators] == [PanopticSubsetEvaluator]
    assert check_folder_dataset(panoptic_folder) == NUM_IMAGES


def test_the_check_names_a_panoptic_segment_its_json_does_not_list(panoptic_folder):
    content = json.loads(panoptic_folder.panoptic_json.read_text())
    entry = content["annotations"][0]
    dropped = entry["segments_info"].pop()
    panoptic_folder.panoptic_json.write_text(json.dumps(content))
    with pytest.raises(FolderDatasetError, match=f"holds segment ids \\[{dropped['id']}\\]"):
        check_folder_dataset(panoptic_folder)


def test_a_panoptic_json_of_other_classes_is_refused(panoptic_folder, tmp_path):
    classes = tmp_path / "three.txt"
    classes.write_text("0:a\n1:b\n2:c\n")
    other = FolderDataset(**{**panoptic_folder.__dict__, "classes": classes})
    with pytest.raises(ValueError, match="categories but .*three.txt 3 classes"):
        register_folder_dataset(other)
