"""COCO-Stuff and COCO-Panoptic: prepare scripts on a tiny fake download, registration, loading."""

import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image

from maft_plus.config import add_maft_plus_config
from maft_plus.data.dataset_mappers import SemanticTrainMapper
from maft_plus.data.datasets import unregister
from maft_plus.data.datasets.register_coco import coco_stuff_class_ids, register_coco
from maft_plus.data.vocabulary import Vocabulary, read_builtin_vocabulary

REPO = Path(__file__).resolve().parents[2]
NUM = {"train2017": 3, "val2017": 2}
H, W = 8, 12
STUFF_NAMES = ["maftp_coco_stuff_train", "maftp_coco_stuff_val"]
PANOPTIC_NAMES = ["maftp_coco_panoptic_train", "maftp_coco_panoptic_val"]

# Stored COCO-Stuff value (id - 1) -> expected contiguous id.
STUFF_VALUES = {
    0: 0,  # person (id 1), the first thing
    1: 1,  # bicycle (id 2)
    89: 79,  # toothbrush (id 90), the last thing
    91: 80,  # banner (id 92), the first stuff
    181: 170,  # wood (id 182), the last stuff
    11: 255,  # street sign (id 12), not one of the 171
    90: 255,  # id 91, not one of the 171
    255: 255,  # unlabeled
}
# Panoptic segments of every fake image: segment id -> (category id, iscrowd, expected class).
SEGMENTS = {
    1: (1, 0, 0),  # person
    2: (1, 1, 255),  # a crowd of persons
    3: (187, 0, 119),  # sky-other-merged
    65793: (184, 0, 116),  # tree-merged; an id that needs all three colour channels
}


def _load_script(name: str) -> ModuleType:
    """Import ``datasets/<name>.py`` (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # worker processes find the module's functions by name
    spec.loader.exec_module(module)
    return module


prepare_coco_stuff = _load_script("prepare_coco_stuff")
prepare_coco_panoptic = _load_script("prepare_coco_panoptic")


def _stem(split: str, i: int) -> str:
    return f"{(1 if split == 'train2017' else 9) * 1000 + i:012d}"


def _stuff_source(i: int) -> np.ndarray:
    """(H, W) uint8 COCO-Stuff map: row r holds one stored value, cycling through STUFF_VALUES."""
    values = np.array(list(STUFF_VALUES), dtype=np.uint8)
    return np.repeat(values[(np.arange(H) + i) % len(values)][:, None], W, axis=1)


def _segment_ids(i: int) -> np.ndarray:
    """(H, W) segment ids: two rows per segment, void (0) in the rest, rolled by ``i`` rows."""
    ids = np.zeros((H, W), dtype=np.int64)
    for row, segment_id in enumerate(SEGMENTS):
        ids[2 * row : 2 * row + 2, : W - 2] = segment_id  # the last two columns stay void
    return np.roll(ids, i, axis=0)


def write_fake_coco(root: Path) -> None:
    """A tiny COCO download: images, COCO-Stuff maps and COCO-Panoptic json + pngs."""
    coco = root / "coco"
    rng = np.random.default_rng(0)
    for split, num in NUM.items():
        for folder in (split, f"stuffthingmaps_trainval2017/{split}", f"panoptic_{split}"):
            (coco / folder).mkdir(parents=True, exist_ok=True)
        (coco / "annotations").mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            stem = _stem(split, i)
            pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(coco / split / f"{stem}.jpg", format="JPEG")
            source = coco / "stuffthingmaps_trainval2017" / split / f"{stem}.png"
            Image.fromarray(_stuff_source(i)).save(source)
            Image.fromarray(id2rgb(_segment_ids(i))).save(coco / f"panoptic_{split}/{stem}.png")
            segments = [
                {"id": sid, "category_id": cid, "iscrowd": crowd, "bbox": [0, 0, W - 2, 2]}
                for sid, (cid, crowd, _) in SEGMENTS.items()
            ]
            images.append({"id": int(stem), "file_name": f"{stem}.jpg", "height": H, "width": W})
            annotations.append(
                {"image_id": int(stem), "file_name": f"{stem}.png", "segments_info": segments}
            )
        categories = [
            {k: c[k] for k in ("id", "name", "isthing", "color")} for c in COCO_CATEGORIES
        ]
        content = {"images": images, "annotations": annotations, "categories": categories}
        (coco / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(content))


def _args(root: Path, *extra: str, workers: int = 1) -> list[str]:
    """Command-line arguments for the fake download: its image counts, ``workers`` processes."""
    counts = ["--expected-train-images", str(NUM["train2017"]), "--expected-val-images"]
    return ["--root", str(root), *counts, str(NUM["val2017"]), "--workers", str(workers), *extra]


@pytest.fixture
def download(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    write_fake_coco(root)
    return root


@pytest.fixture
def prepared(download: Path):
    prepare_coco_stuff.main(_args(download))
    prepare_coco_panoptic.main(_args(download))
    names = register_coco(download)
    yield download
    unregister(names)


def _read(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_coco_stuff_class_ids_follow_the_vocabulary():
    ids = coco_stuff_class_ids()
    names = Vocabulary.from_names(read_builtin_vocabulary("coco_stuff_171")).class_names
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    assert len(ids) == len(names) == 171
    assert ids[:80] == [c["id"] for c in things] and ids[80:] == list(range(92, 183))
    assert list(names[:80]) == [c["name"] for c in things]
    assert (names[80], names[170]) == ("banner", "wood")
    assert set(range(1, 183)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}


def test_coco_stuff_labels_are_contiguous(prepared):
    lookup = np.vectorize(STUFF_VALUES.get)
    for split, name in zip(NUM, STUFF_NAMES, strict=True):
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == NUM[split]
        for i, record in enumerate(dicts):
            stem = _stem(split, i)
            assert record["file_name"] == str(prepared / "coco" / split / f"{stem}.jpg")
            label_file = prepared / "coco/stuffthingmaps_detectron2" / split / f"{stem}.png"
            assert record["sem_seg_file_name"] == str(label_file)
            label = _read(label_file)
            assert label.dtype == np.uint8 and label.shape == (H, W)
            np.testing.assert_array_equal(label, lookup(_stuff_source(i)))
        metadata = MetadataCatalog.get(name)
        assert len(metadata.stuff_classes) == 171 and metadata.stuff_classes[0] == "person"
        assert metadata.is_thing == [True] * 80 + [False] * 91
        assert metadata.ignore_label == 255 and metadata.evaluator_type == "sem_seg"


def test_coco_panoptic_semantic_maps_agree_with_the_pngs(prepared):
    assert COCO_CATEGORIES[119]["name"] == "sky-other-merged"
    assert COCO_CATEGORIES[116]["name"] == "tree-merged"
    for split, name in zip(NUM, PANOPTIC_NAMES, strict=True):
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == NUM[split]
        for i, record in enumerate(dicts):
            stem = _stem(split, i)
            assert record["file_name"] == str(prepared / "coco" / split / f"{stem}.jpg")
            semantic_file = prepared / "coco" / f"panoptic_semseg_{split}" / f"{stem}.png"
            assert record["sem_seg_file_name"] == str(semantic_file)
            assert (record["height"], record["width"]) == (H, W)
            segment_ids = rgb2id(_read(record["pan_seg_file_name"]))
            np.testing.assert_array_equal(segment_ids, _segment_ids(i))
            semantic = _read(semantic_file)
            assert semantic.dtype == np.uint8 and semantic.shape == (H, W)
            assert (semantic[segment_ids == 0] == 255).all()  # void
            for segment in record["segments_info"]:
                category, crowd, expected = SEGMENTS[segment["id"]]
                assert segment["iscrowd"] == crowd
                assert segment["isthing"] == (category == 1)
                mask = segment_ids == segment["id"]
                assert mask.any()
                assert (semantic[mask] == expected).all()
                if not crowd:
                    assert segment["category_id"] == expected  # contiguous in the dicts too
        metadata = MetadataCatalog.get(name)
        assert len(metadata.stuff_classes) == 133 and metadata.stuff_classes[119].startswith("sky")
        assert len(metadata.thing_dataset_id_to_contiguous_id) == 80
        assert metadata.stuff_dataset_id_to_contiguous_id[187] == 119
        assert metadata.stuff_colors[0] == COCO_CATEGORIES[0]["color"]
        assert metadata.evaluator_type == "coco_panoptic_seg"


def _outputs(root: Path) -> dict[Path, tuple[int, bytes]]:
    folders = ["coco/stuffthingmaps_detectron2", "coco/panoptic_semseg_train2017"]
    files = [f for folder in folders for f in sorted((root / folder).rglob("*.png"))]
    return {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}


def test_rerunning_is_harmless(prepared):
    before = _outputs(prepared)
    assert len(before) == 2 * NUM["train2017"] + NUM["val2017"]
    prepare_coco_stuff.main(_args(prepared))
    prepare_coco_panoptic.main(_args(prepared))
    assert _outputs(prepared) == before  # nothing rewritten
    assert not list(prepared.rglob("*.tmp"))  # no temporary file left behind


def test_a_changed_source_is_converted_again(prepared):
    stem = _stem("train2017", 0)
    source = prepared / "coco/stuffthingmaps_trainval2017/train2017" / f"{stem}.png"
    target = prepared / "coco/stuffthingmaps_detectron2/train2017" / f"{stem}.png"
    Image.fromarray(np.full((H, W), 91, dtype=np.uint8)).save(source)  # all banner now
    newer = target.stat().st_mtime + 10
    os.utime(source, (newer, newer))
    prepare_coco_stuff.main(_args(prepared, "--splits", "train2017"))
    assert (_read(target) == 80).all()


def test_parallel_workers_write_the_same_maps(download):
    prepare_coco_stuff.main(_args(download, "--splits", "val2017", workers=2))
    prepare_coco_panoptic.main(_args(download, "--splits", "val2017", workers=2))
    for i in range(NUM["val2017"]):
        stem = _stem("val2017", i)
        label = _read(download / "coco/stuffthingmaps_detectron2/val2017" / f"{stem}.png")
        np.testing.assert_array_equal(label, np.vectorize(STUFF_VALUES.get)(_stuff_source(i)))
        semantic = _read(download / "coco/panoptic_semseg_val2017" / f"{stem}.png")
        classes = {0: 255} | {sid: expected for sid, (_, _, expected) in SEGMENTS.items()}
        np.testing.assert_array_equal(semantic, np.vectorize(classes.get)(_segment_ids(i)))
    assert not (download / "coco/stuffthingmaps_detectron2/train2017").exists()  # --splits
    assert not (download / "coco/panoptic_semseg_train2017").exists()


def test_wrong_counts_are_an_error(download):
    with pytest.raises(RuntimeError, match="expected 118287 files"):
        prepare_coco_stuff.main(["--root", str(download), "--workers", "1"])


@pytest.mark.parametrize(
    ("script", "removed"),
    [
        ("stuff", "coco/train2017"),
        ("stuff", "coco/stuffthingmaps_trainval2017/val2017"),
        ("panoptic", "coco/annotations/panoptic_train2017.json"),
        ("panoptic", "coco/panoptic_val2017"),
        ("panoptic", f"coco/panoptic_train2017/{_stem('train2017', 1)}.png"),
    ],
)
def test_missing_inputs_are_named(download, script, removed):
    path = download / removed
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    main = prepare_coco_stuff.main if script == "stuff" else prepare_coco_panoptic.main
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        main(_args(download))


def test_bad_input_values_are_named(download):
    source = download / "coco/stuffthingmaps_trainval2017/val2017" / f"{_stem('val2017', 0)}.png"
    Image.fromarray(np.full((H, W), 200, dtype=np.uint8)).save(source)
    with pytest.raises(ValueError, match=re.escape(f"{source}: values [200]")):
        prepare_coco_stuff.main(_args(download, "--splits", "val2017"))
    png = download / "coco/panoptic_val2017" / f"{_stem('val2017', 0)}.png"
    Image.fromarray(id2rgb(np.full((H, W), 77, dtype=np.int64))).save(png)
    with pytest.raises(ValueError, match=re.escape(f"{png}: segment ids [77]")):
        prepare_coco_panoptic.main(_args(download, "--splits", "val2017"))


def test_unprepared_datasets_name_the_missing_folder_and_script(download, tmp_path):
    names = register_coco(tmp_path / "empty")  # nothing there: registering still works
    assert names == STUFF_NAMES + PANOPTIC_NAMES
    names = register_coco(download)  # downloaded, not prepared
    try:
        for name, folder, script in (
            (STUFF_NAMES[0], "stuffthingmaps_detectron2/train2017", "prepare_coco_stuff.py"),
            (PANOPTIC_NAMES[1], "panoptic_semseg_val2017", "prepare_coco_panoptic.py"),
        ):
            with pytest.raises(FileNotFoundError) as error:
                DatasetCatalog.get(name)
            assert str(download / "coco" / folder) in str(error.value)
            assert f"python datasets/{script}" in str(error.value)
    finally:
        unregister(names)


def test_train_loader_on_coco_stuff(prepared):
    cfg = get_cfg()
    add_maft_plus_config(cfg)
    cfg.DATASETS.TRAIN = (STUFF_NAMES[0],)
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TRAIN = (16,)
    cfg.INPUT.MAX_SIZE_TRAIN = 100
    cfg.INPUT.CROP.ENABLED = False
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    mapper = SemanticTrainMapper(cfg, is_train=True)
    assert mapper.num_classes == 171 and mapper.ignore_label == 255
    batch = next(iter(build_detection_train_loader(cfg, mapper=mapper)))
    assert len(batch) == 2
    for sample in batch:
        assert sample["image"].shape == (3, 16, 24)
        sem_seg, instances = sample["sem_seg"], sample["instances"]
        assert set(sem_seg.unique().tolist()) == {0, 1, 79, 80, 170, 255}
        assert instances.gt_classes.tolist() == [0, 1, 79, 80, 170]  # one mask per class
        for k, mask in zip(instances.gt_classes.tolist(), instances.gt_masks, strict=True):
            assert torch.equal(mask, sem_seg == k)
