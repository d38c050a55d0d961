"""Registering a semantic-segmentation split (images + one label map per image) with detectron2.

Labels are png (uint8, 255 = ignore) or uint16 tif (65535 = ignore) maps of contiguous class ids
0..K-1; the class names come from a class list (``id:name,synonym,...``). Registration is cheap
and lazy: files are only read when the dataset is loaded.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

from .requirements import forget, missing_files_message, require

logger = logging.getLogger(__name__)


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
    plain_class_names: Sequence[str] | None = None,
    class_ids: Sequence[int] | None = None,
    labelled_images_only: bool = False,
    extra_files: Sequence[str | Path] = (),
    records: Sequence[dict] | None = None,
) -> None:
    """Register ``name`` (replacing an earlier registration of the same name).

    Args:
        name: the detectron2 dataset name.
        image_dir, label_dir: folders of ``<stem>.<image_ext>`` images and their label maps.
        class_names: K comma-separated synonym strings, in contiguous-id order.
        prepare_script: the script that makes these folders, named in errors.
        ignore_label: the label value that marks unlabeled pixels.
        is_thing: optional K thing/stuff flags for the metadata.
        plain_class_names: optional K plain class strings (metadata ``plain_classes``), the
            alternative to the reference ``class_names``.
        class_ids: optional K dataset class ids (metadata ``class_ids``) against which a
            replacement vocabulary file is checked.
        labelled_images_only: the dataset is the images that have a label map (their prepare
            script leaves out maps with no labelled pixel); otherwise every image needs one.
        extra_files: other files the dataset needs (e.g. its vocabulary file).
        records: the dataset's ``{"file_name", "sem_seg_file_name"}`` dicts when the caller has
            paired images and labels itself (images of several formats); default: every
            ``<stem>.<image_ext>`` image of ``image_dir`` with its label.
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
        if records is not None:
            return [dict(record) for record in records]
        if not labelled_images_only:
            return load_sem_seg(
                str(label_dir), str(image_dir), gt_ext=label_ext, image_ext=image_ext
            )
        labels = sorted(label_dir.glob(f"*.{label_ext}"))
        logger.info("%s: %d images with a label map in %s", name, len(labels), label_dir)
        return [
            {
                "file_name": str(image_dir / f"{path.stem}.{image_ext}"),
                "sem_seg_file_name": str(path),
            }
            for path in labels
        ]

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
    if plain_class_names is not None:
        metadata["plain_classes"] = list(plain_class_names)
    if class_ids is not None:
        metadata["class_ids"] = list(class_ids)
    MetadataCatalog.get(name).set(**metadata)
