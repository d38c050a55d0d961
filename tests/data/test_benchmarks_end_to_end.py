"""Every benchmark end to end on tiny fake downloads: prepare, register, load and evaluate.

One datasets root holds the fake COCO, ADE20K and Pascal downloads of ``conftest.py``; the real
``datasets/prepare_*.py`` scripts convert them, ``register_builtin_datasets`` registers them and
``evaluate_datasets`` runs the tiny model on each validation split with that split's vocabulary,
the code path of ``train_net.py --eval-only`` and ``tools/evaluate_benchmarks.py``.
"""

import math
import re
from pathlib import Path

import pytest
import torch
from detectron2.data import MetadataCatalog

from maft_plus.config import setup_cfg
from maft_plus.data.datasets import check_registered, register_builtin_datasets, unregister
from maft_plus.evaluation.loop import evaluate_datasets
from maft_plus.modeling import MAFTPlus

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "maftp_tiny.yaml"

# benchmark -> (classes, validation images) in the fake downloads
BENCHMARKS = {
    "maftp_coco_stuff_val": (171, 2),
    "maftp_coco_panoptic_val": (133, 2),
    "maftp_ade150_val": (150, 3),
    "maftp_ade847_val": (3, 2),  # the classes in the fake validation images (847 in the real one)
    "maftp_ade150_panoptic_val": (150, 3),
    "maftp_pc59_val": (59, 4),
    "maftp_pc459_val": (64, 4),  # the fake labels.txt (459 in the real one)
    "maftp_pas20_val": (20, 4),
    "maftp_pas21_val": (21, 4),
}
PANOPTIC = {"maftp_coco_panoptic_val", "maftp_ade150_panoptic_val"}
# benchmark -> (first path it reads, relative to the datasets root; the script that makes it)
EXPECTED_FILES = {
    "maftp_coco_stuff_val": ("coco/val2017", "prepare_coco_stuff.py"),
    "maftp_coco_panoptic_val": ("coco/val2017", "prepare_coco_panoptic.py"),
    "maftp_ade150_val": ("ADEChallengeData2016/images/validation", "prepare_ade20k_150.py"),
    "maftp_ade847_val": (
        "ADE20K_2021_17_01/images_detectron2/validation",
        "prepare_ade20k_847.py",
    ),
    "maftp_ade150_panoptic_val": (
        "ADEChallengeData2016/images/validation",
        "prepare_ade20k_panoptic.py",
    ),
    "maftp_pc59_val": ("VOCdevkit/VOC2010/images_detectron2/val", "prepare_pascal_context.py"),
    "maftp_pc459_val": ("VOCdevkit/VOC2010/images_detectron2/val", "prepare_pascal_context.py"),
    "maftp_pas20_val": ("VOCdevkit/VOC2012/images_detectron2/val", "prepare_pascal_voc.py"),
    "maftp_pas21_val": ("VOCdevkit/VOC2012/images_detectron2/val", "prepare_pascal_voc.py"),
}


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory, fake_coco, fake_ade, fake_pascal) -> Path:
    """One datasets root with every fake download, converted by every prepare script."""
    root = tmp_path_factory.mktemp("datasets")
    for fake in (fake_coco, fake_ade, fake_pascal):
        fake.write(root)
        fake.prepare(root)
    return root


@pytest.fixture
def registered(prepared_root: Path):
    """The built-in datasets registered on ``prepared_root``; unregistered afterwards, so that
    later tests register them again from their own root (e.g. ``$DETECTRON2_DATASETS``)."""
    names = register_builtin_datasets(prepared_root)
    yield names
    unregister(names)


@pytest.fixture(scope="module")
def cfg():
    return setup_cfg(str(TINY_CONFIG), ["MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "True"])


@pytest.fixture(scope="module")
def model(cfg) -> torch.nn.Module:
    return MAFTPlus(cfg).eval()


def test_every_benchmark_is_registered(prepared_root, registered):
    assert set(BENCHMARKS) <= set(registered)
    check_registered(registered, prepared_root)  # every split, train ones included: no error


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_evaluates_with_its_own_vocabulary(registered, cfg, model, name):
    num_classes, num_images = BENCHMARKS[name]
    assert len(MetadataCatalog.get(name).stuff_classes) == num_classes
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(m.vocabulary.num_classes))
    try:
        results = evaluate_datasets(cfg, model, [name])
    finally:
        hook.remove()
    assert seen == [num_classes] * num_images  # one image per batch, each with this vocabulary
    assert list(results) == [name]
    metrics = {("sem_seg", "mIoU"), ("sem_seg", "mIoU_legacy")}
    if name in PANOPTIC:
        metrics |= {("panoptic_seg", "PQ"), ("panoptic_seg", "SQ"), ("panoptic_seg", "RQ")}
    else:
        assert "panoptic_seg" not in results[name]
    for task, metric in metrics:
        assert math.isfinite(results[name][task][metric]), (task, metric)


def test_an_empty_root_names_the_missing_path_and_its_script(tmp_path):
    names = register_builtin_datasets(tmp_path)
    try:
        for name, (path, script) in EXPECTED_FILES.items():
            expected = re.escape(f"expects {tmp_path / path},")
            message = expected + ".*" + re.escape(f"python datasets/{script}")
            with pytest.raises(FileNotFoundError, match=message):
                check_registered([name], tmp_path)
        with pytest.raises(FileNotFoundError):
            check_registered(list(BENCHMARKS), tmp_path)
    finally:
        unregister(names)
