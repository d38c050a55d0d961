"""Registering a semantic-segmentation split (images + one label map per image) with detectron2.

Labels are png (uint8, 255 = ignore) or uint16 tif (65535 = ignore) maps of contiguous class ids
0..K-1; the class names come from a vocabulary file (``id:name,synonym,...``). Registration is
cheap and lazy: files are only read when the dataset is loaded.
"""

from collections.abc import Sequence
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from .requirements import forget, missing_files_message, require


def register_sem_seg(
    name: str,
    *,
    image_dir: str | Path,
    label_dir: str | Path,
    class_names: Sequence[str],
    prepare_script: str,
    image_ext: str = "jpg",
    label_ext: str = "png",
    ignore_label: int = 255,
    is_thing: Sequence[bool] | None = None,
    extra_files: Sequence[str | Path] = (),
) -> None:
    """Register ``name`` (replacing an earlier registration of the same name).

    Args:
        name: the detectron2 dataset name.
        image_dir, label_dir: folders of ``<stem>.<image_ext>`` images and their label maps.
        class_names: K comma-separated synonym strings, in contiguous-id order.
        prepare_script: the script that makes these folders, named in errors.
        ignore_label: the label value that marks unlabeled pixels.
        is_thing: optional K thing/stuff flags for the metadata.
        extra_files: other files the dataset needs (e.g. its vocabulary file).
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    forget(name)
    require(name, [image_dir, label_dir, *extra_files], prepare_script)

    def load() -> list[dict]:
        message = missing_files_message(name)
        if message:
            raise FileNotFoundError(message)
        return load_sem_seg(str(label_dir), str(image_dir), gt_ext=label_ext, image_ext=image_ext)

    DatasetCatalog.register(name, load)
    metadata = {
        "stuff_classes": list(class_names),
        "image_root": str(image_dir),
        "sem_seg_root": str(label_dir),
        "ignore_label": ignore_label,
        "evaluator_type": "sem_seg",
    }
    if is_thing is not None:
        metadata["is_thing"] = list(is_thing)
    MetadataCatalog.get(name).set(**metadata)
