"""The synthetic dataset writer: files, formats, label consistency, determinism."""

import json
from pathlib import Path

import numpy as np
import pytest
from panopticapi.utils import rgb2id
from PIL import Image

from maft_plus.data.synthetic import (
    IGNORE_LABEL,
    SPLITS,
    SYNTHETIC_CLASSES,
    SplitPaths,
    synthetic_class_names,
    write_synthetic_dataset,
)
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_vocabulary_file

K = len(SYNTHETIC_CLASSES)
NUM = {"train": 12, "val": 4}
SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_dataset(
        root, num_train=NUM["train"], num_val=NUM["val"], image_size=SIZE, seed=3
    )


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _samples(dataset, split: str):
    """(stem, semantic, panoptic ids, panoptic semseg, segments) for every image of a split."""
    paths = dataset.paths(split)
    content = json.loads(paths.panoptic_json.read_text())
    for annotation in content["annotations"]:
        stem = Path(annotation["file_name"]).stem
        yield (
            stem,
            _load(paths.sem_seg / f"{stem}.png"),
            rgb2id(_load(paths.panoptic / f"{stem}.png")),
            _load(paths.panoptic_semseg / f"{stem}.png"),
            annotation["segments_info"],
        )


def test_writes_expected_files(dataset):
    assert dataset.class_names == synthetic_class_names()
    assert dataset.is_thing == tuple(is_thing for _, is_thing in SYNTHETIC_CLASSES)
    assert dict(dataset.num_images) == NUM
    assert dataset.vocabulary_file.is_file()
    for split in SPLITS:
        paths = dataset.paths(split)
        assert paths == SplitPaths.under(dataset.root, split)
        stems = [f"{i:05d}" for i in range(NUM[split])]
        assert sorted(p.name for p in paths.images.iterdir()) == [f"{s}.jpg" for s in stems]
        for folder in (paths.sem_seg, paths.panoptic, paths.panoptic_semseg):
            assert sorted(p.name for p in folder.iterdir()) == [f"{s}.png" for s in stems]
        content = json.loads(paths.panoptic_json.read_text())
        assert [im["file_name"] for im in content["images"]] == [f"{s}.jpg" for s in stems]
        assert [im["id"] for im in content["images"]] == list(range(NUM[split]))
        assert all(im["height"] == im["width"] == SIZE for im in content["images"])
        assert [a["image_id"] for a in content["annotations"]] == list(range(NUM[split]))
        categories = content["categories"]
        assert [c["id"] for c in categories] == list(range(1, K + 1))
        assert [(c["name"], bool(c["isthing"])) for c in categories] == list(SYNTHETIC_CLASSES)
        with Image.open(paths.images / "00000.jpg") as image:
            assert image.mode == "RGB" and image.size == (SIZE, SIZE)
        with Image.open(paths.sem_seg / "00000.png") as label:
            assert label.mode == "L" and label.size == (SIZE, SIZE)


def test_semantic_labels_hold_class_ids_or_ignore(dataset):
    for split in SPLITS:
        for stem, semantic, _, panoptic_semseg, _ in _samples(dataset, split):
            for label in (semantic, panoptic_semseg):
                assert label.dtype == np.uint8
                values = set(np.unique(label).tolist())
                assert values <= set(range(K)) | {IGNORE_LABEL}, (split, stem, values)
            # every image has a shape, so an ignore band around it
            assert (semantic == IGNORE_LABEL).any(), (split, stem)


def test_panoptic_png_matches_json(dataset):
    repeated_class = False
    for split in SPLITS:
        for stem, _, panoptic, _, segments in _samples(dataset, split):
            ids = set(np.unique(panoptic).tolist()) - {0}
            assert ids == {s["id"] for s in segments}, (split, stem)
            for s in segments:
                region = panoptic == s["id"]
                ys, xs = np.nonzero(region)
                assert s["area"] == region.sum()
                assert s["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
                assert 1 <= s["category_id"] <= K and s["iscrowd"] == 0
            things = [
                s["category_id"] for s in segments if SYNTHETIC_CLASSES[s["category_id"] - 1][1]
            ]
            assert 1 <= len(things) <= 3, (split, stem)
            stuff = [
                s["category_id"] for s in segments if not SYNTHETIC_CLASSES[s["category_id"] - 1][1]
            ]
            assert len(stuff) == len(set(stuff)) <= 2  # one segment per stuff class
            repeated_class |= len(things) != len(set(things))
    assert repeated_class, "no image holds two instances of one class"


def test_semantic_formats_agree_with_the_panoptic_png(dataset):
    for split in SPLITS:
        for stem, semantic, panoptic, panoptic_semseg, segments in _samples(dataset, split):
            expected = np.full(panoptic.shape, IGNORE_LABEL)
            for s in segments:
                expected[panoptic == s["id"]] = s["category_id"] - 1
            np.testing.assert_array_equal(panoptic_semseg, expected, err_msg=f"{split} {stem}")
            # the semantic format differs only by extra ignore pixels, all next to a boundary
            labelled = semantic != IGNORE_LABEL
            np.testing.assert_array_equal(semantic[labelled], expected[labelled])
            padded = np.pad(panoptic, 1, mode="edge")
            near_boundary = np.zeros(panoptic.shape, dtype=bool)
            for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
                near_boundary |= padded[dy : dy + SIZE, dx : dx + SIZE] != panoptic
            extra_ignore = ~labelled & (expected != IGNORE_LABEL)
            assert extra_ignore.any() and not (extra_ignore & ~near_boundary).any()


def test_image_colours_follow_the_labels(dataset):
    """Each class's mean colour is nearest its own base colour: the images are learnable."""
    pixels = {k: [] for k in range(K)}
    paths = dataset.paths("train")
    for stem, _, _, panoptic_semseg, _ in _samples(dataset, "train"):
        image = _load(paths.images / f"{stem}.jpg").astype(np.float64)
        for k in range(K):
            pixels[k].append(image[panoptic_semseg == k])
    categories = json.loads(paths.panoptic_json.read_text())["categories"]
    base = np.array([c["color"] for c in categories], dtype=np.float64)  # (K, 3)
    for k in range(K):
        mean = np.concatenate(pixels[k]).mean(axis=0)
        assert np.linalg.norm(base - mean, axis=1).argmin() == k, (SYNTHETIC_CLASSES[k], mean)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_deterministic_for_a_seed(tmp_path):
    kwargs = {"num_train": 3, "num_val": 2, "image_size": 48}
    write_synthetic_dataset(tmp_path / "a", seed=7, **kwargs)
    write_synthetic_dataset(tmp_path / "b", seed=7, **kwargs)
    write_synthetic_dataset(tmp_path / "c", seed=8, **kwargs)
    write_synthetic_dataset(tmp_path / "d", seed=7, num_train=5, num_val=2, image_size=48)
    a, b, c, d = (_file_bytes(tmp_path / name) for name in "abcd")
    assert len(a) == 1 + 2 + 4 * (3 + 2)  # vocabulary, 2 jsons, 4 files per image
    assert a == b
    assert a.keys() == c.keys()
    assert a["images/train/00000.jpg"] != c["images/train/00000.jpg"]
    assert a["panoptic_train/00001.png"] != c["panoptic_train/00001.png"]
    # more images leave the first ones unchanged
    assert a["images/train/00002.jpg"] == d["images/train/00002.jpg"]
    assert a["annotations/val/00001.png"] == d["annotations/val/00001.png"]


def test_vocabulary_file_parses(dataset):
    lines = dataset.vocabulary_file.read_text().splitlines()
    assert lines[0] == "0:invalid_class_id"
    assert lines[1] == "1:circle,round shape"
    names = read_vocabulary_file(dataset.vocabulary_file)
    vocabulary = Vocabulary.from_names(names, dataset.is_thing)
    assert vocabulary.class_names == tuple(name for name, _ in SYNTHETIC_CLASSES)
    assert vocabulary.num_synonyms > vocabulary.num_classes  # some classes have synonyms
    assert Vocabulary.from_names(dataset.class_names, dataset.is_thing) == vocabulary


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": 0}, "num_val"),
        ({"image_size": 8}, "image_size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_dataset(tmp_path, **kwargs)


def test_split_paths_reject_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="test"):
        SplitPaths.under(tmp_path, "test")
