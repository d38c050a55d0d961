"""COCO-Stuff and COCO-Panoptic: prepare scripts on a tiny fake download, registration, loading."""

import os
import re
from pathlib import Path

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
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary

STUFF_NAMES = ["maftp_coco_stuff_train", "maftp_coco_stuff_val"]
PANOPTIC_NAMES = ["maftp_coco_panoptic_train", "maftp_coco_panoptic_val"]


@pytest.fixture
def download(tmp_path: Path, fake_coco) -> Path:
    root = tmp_path / "datasets"
    fake_coco.write(root)
    return root


@pytest.fixture
def prepared(download: Path, fake_coco):
    fake_coco.prepare(download)
    names = register_coco(download)
    yield download
    unregister(names)


def _read(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_coco_stuff_class_ids_follow_the_vocabulary():
    ids = coco_stuff_class_ids()
    names = Vocabulary.from_names(read_builtin_vocabulary("coco_stuff_171", "plain")).class_names
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    assert len(ids) == len(names) == 171
    assert ids[:80] == [c["id"] for c in things] and ids[80:] == list(range(92, 183))
    assert list(names[:80]) == [c["name"] for c in things]
    assert (names[80], names[170]) == ("banner", "wood")
    assert set(range(1, 183)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}


def test_coco_stuff_labels_are_contiguous(prepared, fake_coco):
    lookup = np.vectorize(fake_coco.STUFF_VALUES.get)
    for split, name in zip(fake_coco.NUM, STUFF_NAMES, strict=True):
        dicts = DatasetCatalog.get(name)
        kept = [i for i in range(fake_coco.NUM[split]) if (split, i) != fake_coco.UNLABELLED]
        assert len(dicts) == len(kept)  # the training map with no labelled pixel is left out
        for i, record in zip(kept, dicts, strict=True):
            stem = fake_coco.stem(split, i)
            assert record["file_name"] == str(prepared / "coco" / split / f"{stem}.jpg")
            label_file = prepared / "coco/stuffthingmaps_detectron2" / split / f"{stem}.png"
            assert record["sem_seg_file_name"] == str(label_file)
            label = _read(label_file)
            assert label.dtype == np.uint8 and label.shape == (fake_coco.H, fake_coco.W)
            np.testing.assert_array_equal(label, lookup(fake_coco.stuff_source(i, split)))
        metadata = MetadataCatalog.get(name)
        assert metadata.stuff_classes == read_builtin_vocabulary("coco_stuff_171")
        assert metadata.plain_classes[0] == "person" and len(metadata.plain_classes) == 171
        assert metadata.is_thing == [True] * 80 + [False] * 91
        assert metadata.ignore_label == 255 and metadata.evaluator_type == "sem_seg"


def test_coco_panoptic_semantic_maps_agree_with_the_pngs(prepared, fake_coco):
    assert COCO_CATEGORIES[119]["name"] == "sky-other-merged"
    assert COCO_CATEGORIES[116]["name"] == "tree-merged"
    for split, name in zip(fake_coco.NUM, PANOPTIC_NAMES, strict=True):
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == fake_coco.NUM[split]
        for i, record in enumerate(dicts):
            stem = fake_coco.stem(split, i)
            assert record["file_name"] == str(prepared / "coco" / split / f"{stem}.jpg")
            semantic_file = prepared / "coco" / f"panoptic_semseg_{split}" / f"{stem}.png"
            assert record["sem_seg_file_name"] == str(semantic_file)
            assert (record["height"], record["width"]) == (fake_coco.H, fake_coco.W)
            segment_ids = rgb2id(_read(record["pan_seg_file_name"]))
            np.testing.assert_array_equal(segment_ids, fake_coco.segment_ids(i))
            semantic = _read(semantic_file)
            assert semantic.dtype == np.uint8 and semantic.shape == (fake_coco.H, fake_coco.W)
            assert (semantic[segment_ids == 0] == 255).all()  # void
            for segment in record["segments_info"]:
                category, crowd, expected = fake_coco.SEGMENTS[segment["id"]]
                assert segment["iscrowd"] == crowd
                assert segment["isthing"] == (category == 1)
                mask = segment_ids == segment["id"]
                assert mask.any()
                assert (semantic[mask] == expected).all()  # crowd regions too
                assert segment["category_id"] == expected  # contiguous in the dicts too
        metadata = MetadataCatalog.get(name)
        assert len(metadata.stuff_classes) == 133 and metadata.stuff_classes[119].startswith("sky")
        assert metadata.class_ids == [c["id"] for c in COCO_CATEGORIES]
        assert len(metadata.thing_dataset_id_to_contiguous_id) == 80
        assert metadata.stuff_dataset_id_to_contiguous_id[187] == 119
        assert metadata.stuff_colors[0] == COCO_CATEGORIES[0]["color"]
        assert metadata.evaluator_type == "coco_panoptic_seg"


def _outputs(root: Path) -> dict[Path, tuple[int, bytes]]:
    folders = ["coco/stuffthingmaps_detectron2", "coco/panoptic_semseg_train2017"]
    files = [f for folder in folders for f in sorted((root / folder).rglob("*.png"))]
    return {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}


def test_rerunning_is_harmless(prepared, fake_coco):
    before = _outputs(prepared)
    assert len(before) == 2 * fake_coco.NUM["train2017"] + fake_coco.NUM["val2017"] - 1
    fake_coco.prepare(prepared)
    assert _outputs(prepared) == before  # nothing rewritten
    assert not list(prepared.rglob("*.tmp"))  # no temporary file left behind


def test_a_changed_source_is_converted_again(prepared, fake_coco):
    stem = fake_coco.stem("train2017", 0)
    source = prepared / "coco/stuffthingmaps_trainval2017/train2017" / f"{stem}.png"
    target = prepared / "coco/stuffthingmaps_detectron2/train2017" / f"{stem}.png"
    banner = np.full((fake_coco.H, fake_coco.W), 91, dtype=np.uint8)
    Image.fromarray(banner).save(source)  # all banner now
    newer = target.stat().st_mtime + 10
    os.utime(source, (newer, newer))
    fake_coco.stuff_script.main(fake_coco.args(prepared, "--splits", "train2017"))
    assert (_read(target) == 80).all()


def test_a_training_map_without_labels_is_left_out(prepared, fake_coco, caplog):
    stem = fake_coco.stem(*fake_coco.UNLABELLED)
    target = prepared / "coco/stuffthingmaps_detectron2/train2017" / f"{stem}.png"
    assert not target.exists()
    target.write_bytes(b"stale")  # left by an earlier run; its source is newer
    source = prepared / "coco/stuffthingmaps_trainval2017/train2017" / f"{stem}.png"
    newer = target.stat().st_mtime + 10
    os.utime(source, (newer, newer))
    with caplog.at_level("INFO"):
        fake_coco.stuff_script.main(fake_coco.args(prepared, "--splits", "train2017"))
    assert not target.exists()
    assert "1 maps have no labelled pixel and are left out" in caplog.text
    images = [Path(d["file_name"]).stem for d in DatasetCatalog.get(STUFF_NAMES[0])]
    assert stem not in images and len(images) == fake_coco.NUM["train2017"] - 1


def test_parallel_workers_write_the_same_maps(download, fake_coco):
    fake_coco.stuff_script.main(fake_coco.args(download, "--splits", "val2017", workers=2))
    fake_coco.panoptic_script.main(fake_coco.args(download, "--splits", "val2017", workers=2))
    for i in range(fake_coco.NUM["val2017"]):
        stem = fake_coco.stem("val2017", i)
        label = _read(download / "coco/stuffthingmaps_detectron2/val2017" / f"{stem}.png")
        expected = np.vectorize(fake_coco.STUFF_VALUES.get)(fake_coco.stuff_source(i))
        np.testing.assert_array_equal(label, expected)
        semantic = _read(download / "coco/panoptic_semseg_val2017" / f"{stem}.png")
        classes = {0: 255} | {sid: expected for sid, (_, _, expected) in fake_coco.SEGMENTS.items()}
        np.testing.assert_array_equal(semantic, np.vectorize(classes.get)(fake_coco.segment_ids(i)))
    assert not (download / "coco/stuffthingmaps_detectron2/train2017").exists()  # --splits
    assert not (download / "coco/panoptic_semseg_train2017").exists()


def test_wrong_counts_are_an_error(download, fake_coco):
    with pytest.raises(RuntimeError, match="expected 118287 files"):
        fake_coco.stuff_script.main(["--root", str(download), "--workers", "1"])


@pytest.mark.parametrize(
    ("script", "removed"),
    [
        ("stuff", "coco/train2017"),
        ("stuff", "coco/stuffthingmaps_trainval2017/val2017"),
        ("panoptic", "coco/annotations/panoptic_train2017.json"),
        ("panoptic", "coco/panoptic_val2017"),
        ("panoptic", "coco/panoptic_train2017/{second_train_stem}.png"),
    ],
)
def test_missing_inputs_are_named(download, fake_coco, script, removed):
    path = download / removed.format(second_train_stem=fake_coco.stem("train2017", 1))
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    else:
        path.unlink()
    main = fake_coco.stuff_script.main if script == "stuff" else fake_coco.panoptic_script.main
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        main(fake_coco.args(download))


def test_bad_input_values_are_named(download, fake_coco):
    stem = fake_coco.stem("val2017", 0)
    source = download / "coco/stuffthingmaps_trainval2017/val2017" / f"{stem}.png"
    Image.fromarray(np.full((fake_coco.H, fake_coco.W), 200, dtype=np.uint8)).save(source)
    with pytest.raises(ValueError, match=re.escape(f"{source}: values [200]")):
        fake_coco.stuff_script.main(fake_coco.args(download, "--splits", "val2017"))
    png = download / "coco/panoptic_val2017" / f"{stem}.png"
    Image.fromarray(id2rgb(np.full((fake_coco.H, fake_coco.W), 77, dtype=np.int64))).save(png)
    with pytest.raises(ValueError, match=re.escape(f"{png}: segment ids [77]")):
        fake_coco.panoptic_script.main(fake_coco.args(download, "--splits", "val2017"))


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
