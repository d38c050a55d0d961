"""Every benchmark end to end on tiny fake downloads: prepare, register, load and evaluate.

One datasets root holds the fake COCO, ADE20K and Pascal downloads of ``conftest.py``; the real
``datasets/prepare_*.py`` scripts convert them, ``register_builtin_datasets`` registers them and
``evaluate_datasets`` runs the tiny model on each validation split with that split's vocabulary,
the code path of ``train_net.py --eval-only`` and ``tools/evaluate_benchmarks.py``.
"""

import math
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from detectron2.data import MetadataCatalog

from maft_plus.config import setup_cfg
from maft_plus.data.datasets import check_registered, register_builtin_datasets, unregister
from maft_plus.data.vocabulary.datasets import dataset_vocabulary
from maft_plus.evaluation.loop import evaluate_datasets
from maft_plus.modeling import MAFTPlus

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "maftp_tiny.yaml"

# benchmark -> (classes, validation images) in the fake downloads
BENCHMARKS = {
    "maftp_coco_stuff_val": (171, 2),
    "maftp_coco_panoptic_val": (133, 2),
    "maftp_ade150_val": (150, 3),
    "maftp_ade847_val": (847, 2),
    "maftp_ade150_panoptic_val": (150, 3),
    "maftp_pc59_val": (59, 4),
    "maftp_pc459_val": (459, 4),
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


# benchmark -> its shipped class lists ("voc20": voc21 without its first line)
CLASS_LISTS = {
    "maftp_coco_stuff_train": "coco_stuff_171",
    "maftp_coco_panoptic_val": "coco_panoptic_133",
    "maftp_ade150_val": "ade150",
    "maftp_ade847_val": "ade847",
    "maftp_ade150_panoptic_val": "ade150",
    "maftp_pc59_val": "pc59",
    "maftp_pc459_val": "pc459",
    "maftp_pas20_val": "voc20",
    "maftp_pas21_val": "voc21",
}


def shipped_file(style: str, name: str, path: Path) -> Path:
    """A copy of the shipped ``style`` list of ``name`` at ``path``, as a user would pass it."""
    source = resources.files("maft_plus.data") / "vocabularies" / style
    if name == "voc20":
        lines = (source / "voc21.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[1:]), encoding="utf-8")  # VOC-21 without its first line
    else:
        path.write_bytes((source / f"{name}.txt").read_bytes())
    return path


@pytest.mark.parametrize("name", list(CLASS_LISTS))
def test_shipped_files_through_vocabulary_file_equal_the_defaults(tmp_path, name):
    """The reference files fed as --vocabulary-file give the default vocabulary; plain ones the
    plain names; the same list with two classes swapped is refused."""
    names = register_builtin_datasets(tmp_path / "empty")  # registration alone: no data needed
    try:
        default, label = dataset_vocabulary(name)
        assert label == "reference"
        reference = shipped_file("reference", CLASS_LISTS[name], tmp_path / "reference.txt")
        assert dataset_vocabulary(name, str(reference)) == (default, str(reference))
        plain, label = dataset_vocabulary(name, class_names="plain")
        assert label == "plain"
        assert plain.is_thing == default.is_thing and plain != default
        plain_file = shipped_file("plain", CLASS_LISTS[name], tmp_path / "plain.txt")
        assert dataset_vocabulary(name, str(plain_file))[0] == plain
        lines = reference.read_text(encoding="utf-8").splitlines()
        real = [k for k, line in enumerate(lines) if not line.endswith(":invalid_class_id")]
        first, second = real[0], real[1]
        ids = [line.partition(":")[0] for line in lines]
        texts = [line.partition(":")[2] for line in lines]
        texts[first], texts[second] = texts[second], texts[first]
        permuted = tmp_path / "permuted.txt"
        permuted.write_text("\n".join(f"{i}:{t}" for i, t in zip(ids, texts, strict=True)))
        with pytest.raises(ValueError, match=f"class {ids[first]} .* shares no name"):
            dataset_vocabulary(name, str(permuted))
    finally:
        unregister(names)
