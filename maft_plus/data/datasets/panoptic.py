"""Registering a COCO-format panoptic split (png + json) with its derived semantic label maps.

Dataset dicts are detectron2's COCO-panoptic dicts plus ``sem_seg_file_name``, ``height`` and
``width``, so one split serves panoptic evaluation (PQ), semantic evaluation (mIoU) and training.
"""

import json
from collections.abc import Sequence
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco_panoptic import load_coco_panoptic_json

from .requirements import forget, missing_files_message, require


def register_panoptic(
    name: str,
    *,
    image_dir: str | Path,
    panoptic_dir: str | Path,
    panoptic_json: str | Path,
    semantic_dir: str | Path | None,
    categories: Sequence[dict],
    class_names: Sequence[str] | None = None,
    plain_class_names: Sequence[str] | None = None,
    class_ids: Sequence[int] | None = None,
    prepare_script: str,
    semantic_script: str | None = None,
    ignore_label: int = 255,
    colors: Sequence[Sequence[int]] | None = None,
) -> None:
    """Register ``name`` (replacing an earlier registration of the same name).

    Args:
        image_dir: the images (``<stem>.jpg``).
        panoptic_dir, panoptic_json: COCO-panoptic pngs and their json.
        semantic_dir: uint8 semantic maps (contiguous ids, ``ignore_label`` elsewhere) named like
            the panoptic pngs; None for a dataset without them (PQ only, no mIoU).
        categories: the K json categories (``id``, ``name``, ``isthing``) in contiguous order.
        class_names: K comma-separated synonym strings to use as the vocabulary; default: the
            categories' names.
        plain_class_names, class_ids: optional metadata ``plain_classes`` and ``class_ids``
            (see ``register_sem_seg``).
        prepare_script: the script that makes these files, named in errors.
        semantic_script: the script that makes ``semantic_dir``, if not ``prepare_script``.
    """
    image_dir, panoptic_dir = Path(image_dir), Path(panoptic_dir)
    panoptic_json = Path(panoptic_json)
    semantic_dir = Path(semantic_dir) if semantic_dir is not None else None
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    forget(name)
    require(name, [image_dir, panoptic_dir, panoptic_json], prepare_script)
    if semantic_dir is not None:
        require(name, [semantic_dir], semantic_script or prepare_script)
    names = list(class_names) if class_names is not None else [c["name"] for c in categories]
    if len(names) != len(categories):
        raise ValueError(f"{name}: {len(names)} class names for {len(categories)} categories")
    contiguous = {c["id"]: k for k, c in enumerate(categories)}  # json category id -> 0..K-1
    is_thing = [bool(c["isthing"]) for c in categories]
    id_maps = {
        "thing_dataset_id_to_contiguous_id": {i: k for i, k in contiguous.items() if is_thing[k]},
        "stuff_dataset_id_to_contiguous_id": contiguous,
    }

    def load() -> list[dict]:
        message = missing_files_message(name)
        if message:
            raise FileNotFoundError(message)
        dicts = load_coco_panoptic_json(
            str(panoptic_json), str(image_dir), str(panoptic_dir), id_maps
        )
        with panoptic_json.open(encoding="utf-8") as f:
            images = {im["id"]: im for im in json.load(f)["images"]}
        for record in dicts:
            image = images[record["image_id"]]
            # detectron2 assumes <stem>.jpg; the json names the image file itself.
            record["file_name"] = str(image_dir / image["file_name"])
            if semantic_dir is not None:
                pan_name = Path(record["pan_seg_file_name"]).name
                record["sem_seg_file_name"] = str(semantic_dir / pan_name)
            record["height"], record["width"] = image["height"], image["width"]
        return dicts

    DatasetCatalog.register(name, load)
    colors = [list(c) for c in colors] if colors is not None else None
    MetadataCatalog.get(name).set(
        stuff_classes=names,
        thing_classes=names,  # indexed by contiguous id, like stuff_classes
        is_thing=is_thing,
        image_root=str(image_dir),
        panoptic_root=str(panoptic_dir),
        panoptic_json=str(panoptic_json),
        **({"sem_seg_root": str(semantic_dir)} if semantic_dir is not None else {}),
        ignore_label=ignore_label,
        evaluator_type="coco_panoptic_seg",
        **({"stuff_colors": colors, "thing_colors": colors} if colors else {}),
        **({"plain_classes": list(plain_class_names)} if plain_class_names is not None else {}),
        **({"class_ids": list(class_ids)} if class_ids is not None else {}),
        **id_maps,
    )
