"""Training mappers: output fields, mask/label consistency, joint augmentation, bad samples."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from panopticapi.utils import rgb2id
from PIL import Image

from maft_plus.config import add_maft_plus_config
from maft_plus.data.dataset_mappers import (
    PanopticTrainMapper,
    SemanticTrainMapper,
    build_lsj_augmentations,
)
from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.skipped_samples import SKIPPED_KEY, SkipLimit, SkippedSamplesError
from maft_plus.data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset

PREFIX = "test_dataset_mappers"
K = len(SYNTHETIC_CLASSES)
SIZE = 64
LIMIT = SkipLimit(max_fraction=0.5, min_skipped=3)


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_train=4, num_val=1, image_size=SIZE, seed=1)
    names = register_synthetic(root, prefix=PREFIX)
    yield names
    unregister(names)


def _semantic_mapper(augmentations: list, limit: SkipLimit = LIMIT) -> SemanticTrainMapper:
    return SemanticTrainMapper(
        augmentations=augmentations,
        image_format="RGB",
        ignore_label=255,
        num_classes=K,
        skip_limit=limit,
    )


def _panoptic_mapper(augmentations: list) -> PanopticTrainMapper:
    return PanopticTrainMapper(
        augmentations=augmentations,
        image_format="RGB",
        ignore_label=255,
        num_classes=K,
        skip_limit=LIMIT,
    )


def _reported_with_next_good(mapper, good_record: dict) -> list[dict]:
    """The skip records that the mapper hands over with its next good sample."""
    sample = mapper(good_record)
    assert sample is not None
    return sample[SKIPPED_KEY]


def _check_sample(sample: dict, height: int, width: int) -> None:
    """Fields, dtypes and shapes; each mask is exactly its class's pixels of sem_seg."""
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, height, width)
    sem_seg = sample["sem_seg"]
    assert sem_seg.dtype == torch.int64 and sem_seg.shape == (height, width)
    instances = sample["instances"]
    assert instances.image_size == (height, width)
    classes, masks = instances.gt_classes, instances.gt_masks
    assert classes.dtype == torch.int64 and masks.dtype == torch.bool
    assert masks.shape == (len(classes), height, width)
    assert ((classes >= 0) & (classes < K)).all()
    assert masks.flatten(1).any(dim=1).all()  # no empty mask
    assert (masks.sum(0) <= 1).all()  # masks do not overlap
    covered = masks.any(0)
    assert (sem_seg[~covered] == 255).all()
    for k, mask in zip(classes.tolist(), masks, strict=True):
        assert (sem_seg[mask] == k).all()


def test_semantic_mapper_outputs(names):
    mapper = _semantic_mapper([T.ResizeShortestEdge(48, 1000), T.RandomFlip()])
    for record in DatasetCatalog.get(names[0]):
        sample = mapper(record)
        assert sample["file_name"] == record["file_name"]
        assert (sample["height"], sample["width"]) == (SIZE, SIZE)  # as read, before resizing
        assert "sem_seg_file_name" in record  # the input dict is not modified
        _check_sample(sample, 48, 48)
        sem_seg, instances = sample["sem_seg"], sample["instances"]
        present = sorted(set(sem_seg.unique().tolist()) - {255})
        assert instances.gt_classes.tolist() == present  # one mask per class present
        for k, mask in zip(present, instances.gt_masks, strict=True):
            assert torch.equal(mask, sem_seg == k)
        assert (sem_seg == 255).any()  # the ignore band survives, with no mask


def test_semantic_mapper_from_config(names):
    cfg = get_cfg()
    add_maft_plus_config(cfg)
    cfg.DATASETS.TRAIN = (names[0],)
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = [32, 24]
    mapper = SemanticTrainMapper(cfg, is_train=True)
    assert mapper.ignore_label == 255 and mapper.num_classes == K
    kinds = [type(aug) for aug in mapper.augmentations.augs]
    assert kinds == [T.ResizeShortestEdge, T.RandomCrop, T.RandomFlip]
    _check_sample(mapper(DatasetCatalog.get(names[0])[0]), 32, 24)
    with pytest.raises(ValueError, match="is_train=False"):
        SemanticTrainMapper(cfg, is_train=False)


def _write_asymmetric(tmp_path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """A 6x10 png image, red in the left 3 columns and blue elsewhere, labelled 1 and 2."""
    image = np.zeros((6, 10, 3), dtype=np.uint8)
    image[:, :3] = (255, 0, 0)
    image[:, 3:] = (0, 0, 255)
    image[0, 0] = (0, 255, 0)  # one green corner pixel, labelled 255
    label = np.full((6, 10), 2, dtype=np.uint8)
    label[:, :3] = 1
    label[0, 0] = 255
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(label).save(tmp_path / "label.png")
    record = {
        "file_name": str(tmp_path / "image.png"),
        "sem_seg_file_name": str(tmp_path / "label.png"),
    }
    return record, image, label


def test_semantic_flip_moves_image_and_label_together(tmp_path):
    record, image, label = _write_asymmetric(tmp_path)
    sample = _semantic_mapper([T.RandomFlip(prob=1.0)])(record)
    assert torch.equal(sample["image"], torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1))
    assert torch.equal(sample["sem_seg"], torch.from_numpy(label[:, ::-1].astype(np.int64)))
    assert sample["sem_seg"][0, -1] == 255 and sample["sem_seg"][0, 0] == 2
    assert sample["instances"].gt_classes.tolist() == [1, 2]
    assert sample["instances"].gt_masks[0, 1:, -3:].all()  # class 1 now on the right
    unflipped = _semantic_mapper([T.RandomFlip(prob=0.0)])(record)
    assert torch.equal(unflipped["sem_seg"], torch.from_numpy(label.astype(np.int64)))


def test_semantic_resize_keeps_image_and_label_aligned(tmp_path):
    record, _, _ = _write_asymmetric(tmp_path)
    sample = _semantic_mapper([T.ResizeShortestEdge(12, 1000)])(record)
    _check_sample(sample, 12, 20)
    image, sem_seg = sample["image"], sample["sem_seg"]
    # bilinear image, nearest label: the redder pixels are class 1 (rows clear of the corner)
    redder = image[0].int() > image[2].int()
    assert torch.equal(redder[4:], sem_seg[4:] == 1)
    assert (sem_seg[4:, :6] == 1).all() and (sem_seg[4:, 6:] == 2).all()


def test_a_good_sample_carries_no_skip_records(tmp_path):
    record, _, _ = _write_asymmetric(tmp_path)
    assert SKIPPED_KEY not in _semantic_mapper([])(record)


def _skipped_reason(mapper, bad_record: dict, good_record: dict) -> str:
    """Map a bad record (None), then a good one, which carries the bad one's skip record."""
    assert mapper(bad_record) is None
    (reported,) = _reported_with_next_good(mapper, good_record)
    assert reported["file_name"] == bad_record["file_name"]
    assert SKIPPED_KEY not in mapper(good_record)  # handed over once
    return reported["reason"]


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a png")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda image, label: image.unlink(), r"image .*bad/image\.png not found"),
        (lambda image, label: _corrupt(image), r"could not read the image .*bad/image\.png"),
        (lambda image, label: _truncate(image), r"could not read the image .*bad/image\.png"),
        (lambda image, label: _corrupt(label), r"could not read the label .*bad/label\.png"),
        (
            lambda image, label: Image.open(label).crop((0, 0, 8, 6)).save(label),
            r"label .*bad/label\.png is 8x6 \(WxH\) but its image .*bad/image\.png is 10x6",
        ),
        (
            lambda image, label: Image.fromarray(np.full((6, 10), K, np.uint8)).save(label),
            rf"label .*bad/label\.png holds class ids \[{K}\] outside 0\.\.{K - 1}",
        ),
    ],
    ids=["missing", "corrupt", "truncated", "corrupt-label", "label-size", "label-ids"],
)
def test_a_bad_semantic_sample_is_skipped_and_reported_with_the_next(tmp_path, damage, reason):
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad, _, _ = _write_asymmetric(tmp_path / "bad")
    good, _, _ = _write_asymmetric(tmp_path / "good")
    damage(Path(bad["file_name"]), Path(bad["sem_seg_file_name"]))
    assert re.search(reason, _skipped_reason(_semantic_mapper([]), bad, good))


def test_an_image_not_the_size_of_its_record_is_skipped(tmp_path):
    record, _, _ = _write_asymmetric(tmp_path)
    wrong = {**record, "height": 7, "width": 10}
    reason = _skipped_reason(_semantic_mapper([]), wrong, record)
    assert re.search(r"image .*image\.png is 10x6 \(WxH\) but its dataset record says 10x7", reason)


def test_bad_samples_in_a_row_stop_the_mapper_by_name(tmp_path):
    record, _, _ = _write_asymmetric(tmp_path)
    bad = {**record, "file_name": str(tmp_path / "missing.png")}
    mapper = _semantic_mapper([], SkipLimit(max_fraction=0.5, min_skipped=3))
    assert mapper(bad) is None and mapper(bad) is None
    with pytest.raises(SkippedSamplesError, match=r"3 of the 3 training samples") as info:
        mapper(bad)
    assert "missing.png not found" in str(info.value)


def test_bad_samples_in_a_row_under_the_share_go_on(tmp_path):
    record, _, _ = _write_asymmetric(tmp_path)
    bad = {**record, "file_name": str(tmp_path / "missing.png")}
    mapper = _semantic_mapper([], SkipLimit(max_fraction=0.5, min_skipped=3))
    for _ in range(4):
        assert mapper(record) is not None
    assert [mapper(bad) for _ in range(3)] == [None] * 3  # 3 of 7 met: under half
    assert len(mapper(record)[SKIPPED_KEY]) == 3


def test_panoptic_mapper_outputs(names):
    mapper = _panoptic_mapper(build_lsj_augmentations(32, 0.1, 2.0))
    for record in DatasetCatalog.get(names[2]):
        sample = mapper(record)
        assert sample["image_id"] == record["image_id"]
        assert "segments_info" in record  # the input dict is not modified
        _check_sample(sample, 32, 32)


def test_panoptic_identity_gives_one_mask_per_segment(names):
    """With no augmentation, the masks are exactly the segments of the png, things separate."""
    record = max(DatasetCatalog.get(names[2]), key=lambda r: len(r["segments_info"]))
    assert len(record["segments_info"]) >= 3
    sample = _panoptic_mapper([])(record)
    _check_sample(sample, SIZE, SIZE)
    with Image.open(record["pan_seg_file_name"]) as png:
        panoptic = torch.from_numpy(rgb2id(np.asarray(png)).astype(np.int64))
    segments = record["segments_info"]
    assert sample["instances"].gt_classes.tolist() == [s["category_id"] for s in segments]
    for segment, mask in zip(segments, sample["instances"].gt_masks, strict=True):
        assert torch.equal(mask, panoptic == segment["id"])
    with Image.open(record["sem_seg_file_name"]) as png:
        assert torch.equal(sample["sem_seg"], torch.from_numpy(np.asarray(png).astype(np.int64)))


def test_panoptic_flip_moves_image_and_masks_together(names):
    record = DatasetCatalog.get(names[2])[0]
    plain = _panoptic_mapper([])(record)
    flipped = _panoptic_mapper([T.RandomFlip(prob=1.0)])(record)
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["sem_seg"], plain["sem_seg"].flip(-1))
    assert torch.equal(flipped["instances"].gt_masks, plain["instances"].gt_masks.flip(-1))
    assert not torch.equal(flipped["instances"].gt_masks, plain["instances"].gt_masks)


def test_panoptic_crowd_segments_dropped(names):
    record = copy.deepcopy(DatasetCatalog.get(names[2])[0])
    crowd = record["segments_info"][-1]
    crowd["iscrowd"] = 1
    sample = _panoptic_mapper([])(record)
    assert len(sample["instances"]) == len(record["segments_info"]) - 1
    with Image.open(record["pan_seg_file_name"]) as png:
        crowd_pixels = torch.from_numpy(rgb2id(np.asarray(png)) == crowd["id"])
    assert crowd_pixels.any() and (sample["sem_seg"][crowd_pixels] == 255).all()
    assert not sample["instances"].gt_masks[:, crowd_pixels].any()


def test_panoptic_jitter_pads_and_crops_to_the_target_size(names):
    record = DatasetCatalog.get(names[2])[0]
    small = _panoptic_mapper([T.ResizeScale(0.25, 0.25, SIZE, SIZE), T.FixedSizeCrop((SIZE, SIZE))])
    sample = small(record)
    _check_sample(sample, SIZE, SIZE)
    assert (sample["sem_seg"][SIZE // 4 :, :] == 255).all()  # padding is ignored
    assert (sample["image"][:, SIZE // 4 :, :] == 128).all()
    large = _panoptic_mapper([T.ResizeScale(2.0, 2.0, SIZE, SIZE), T.FixedSizeCrop((SIZE, SIZE))])
    _check_sample(large(record), SIZE, SIZE)


def test_panoptic_mapper_from_config(names):
    cfg = get_cfg()
    add_maft_plus_config(cfg)
    cfg.DATASETS.TRAIN = (names[2],)
    cfg.MODEL.MAFT_PLUS.LSJ.IMAGE_SIZE = 40
    cfg.MODEL.MAFT_PLUS.LSJ.MIN_SCALE = 0.5
    cfg.MODEL.MAFT_PLUS.LSJ.MAX_SCALE = 1.5
    mapper = PanopticTrainMapper(cfg)
    kinds = [type(aug) for aug in mapper.augmentations.augs]
    assert kinds == [T.ResizeScale, T.FixedSizeCrop, T.RandomFlip]
    assert mapper.num_classes == K and mapper.ignore_label == 255
    _check_sample(mapper(DatasetCatalog.get(names[2])[1]), 40, 40)


def test_a_panoptic_segment_with_a_bad_category_is_skipped(names):
    good = DatasetCatalog.get(names[2])[1]
    record = copy.deepcopy(DatasetCatalog.get(names[2])[0])
    record["segments_info"][0]["category_id"] = K
    reason = _skipped_reason(_panoptic_mapper([]), record, good)
    assert re.search(rf"has category_id {K}, outside the contiguous ids 0\.\.{K - 1}", reason)


def test_a_panoptic_png_of_the_wrong_size_is_skipped(names, tmp_path):
    good = DatasetCatalog.get(names[2])[1]
    record = copy.deepcopy(DatasetCatalog.get(names[2])[0])
    with Image.open(record["pan_seg_file_name"]) as png:
        png.crop((0, 0, SIZE, SIZE - 4)).save(tmp_path / "short.png")
    record["pan_seg_file_name"] = str(tmp_path / "short.png")
    reason = _skipped_reason(_panoptic_mapper([]), record, good)
    assert re.search(r"panoptic png .*short\.png is 64x60 \(WxH\)", reason)


def test_a_corrupt_panoptic_png_is_skipped(names, tmp_path):
    good = DatasetCatalog.get(names[2])[1]
    record = copy.deepcopy(DatasetCatalog.get(names[2])[0])
    _corrupt(tmp_path / "corrupt.png")
    record["pan_seg_file_name"] = str(tmp_path / "corrupt.png")
    reason = _skipped_reason(_panoptic_mapper([]), record, good)
    assert "could not read the panoptic png" in reason and "corrupt.png" in reason


def test_lsj_rejects_bad_scales():
    with pytest.raises(ValueError, match="min_scale"):
        build_lsj_augmentations(32, 2.0, 0.1)
    with pytest.raises(ValueError, match="random_flip"):
        build_lsj_augmentations(32, 0.1, 2.0, random_flip="diagonal")
