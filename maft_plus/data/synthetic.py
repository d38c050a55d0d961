"""A tiny synthetic dataset of coloured shapes on textured ground, in the real on-disk formats.

Layout under ``root`` (split: train or val; xxxxx: the image index, 5 digits):

    vocabulary.txt                      ``id:name,synonym`` lines, ``0:invalid_class_id`` first
    images/{split}/xxxxx.jpg            RGB, JPEG quality 95
    annotations/{split}/xxxxx.png       semantic (COCO-Stuff / ADE style): uint8 class ids 0..K-1,
                                        255 = ignore (the split line and a band around each shape)
    panoptic_{split}/xxxxx.png          panoptic RGB, id = R + 256 G + 256^2 B, 0 = unlabeled
    panoptic_{split}.json               COCO-panoptic images, annotations, categories (ids 1..K)
    panoptic_semseg_{split}/xxxxx.png   the panoptic png as uint8 class ids 0..K-1, 255 = unlabeled

Each image holds one stuff class filling it, or two split by a line, and 1-3 shape instances
(classes may repeat). Each image is drawn from ``numpy.random.default_rng([seed, split, index])``:
a seed gives the same files, and adding images leaves the others unchanged.

Shapes: K classes, S image side.
"""

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image, ImageDraw

from .vocabulary.class_lists import INVALID_CLASS_LINE

logger = logging.getLogger(__name__)

# The K classes as (name, is_thing), in contiguous-id order; panoptic category id = index + 1.
SYNTHETIC_CLASSES: tuple[tuple[str, bool], ...] = (
    ("circle", True),
    ("square", True),
    ("triangle", True),
    ("star", True),
    ("grass", False),
    ("water", False),
    ("sand", False),
)
# Extra synonyms written to vocabulary.txt after a class's name.
SYNTHETIC_SYNONYMS = MappingProxyType({"circle": ("round shape",), "grass": ("lawn",)})
SPLITS = ("train", "val")
VOCABULARY_FILE = "vocabulary.txt"
IGNORE_LABEL = 255

# Things: (base RGB colour, polygon corners (0 = a disc), inner/outer radius ratio (1 = convex)).
_THING_STYLES = MappingProxyType(
    {
        "circle": ((220, 40, 40), 0, 1.0),
        "square": ((150, 60, 210), 4, 1.0),
        "triangle": ((250, 150, 20), 3, 1.0),
        "star": ((235, 235, 235), 10, 0.45),
    }
)
# Stuff textures: (base RGB colour, smooth-noise, speckle and stripe amplitudes).
_STUFF_TEXTURES = MappingProxyType(
    {
        "grass": ((60, 130, 45), 25.0, 15.0, 0.0),
        "water": ((40, 90, 175), 15.0, 5.0, 20.0),
        "sand": ((205, 185, 125), 10.0, 20.0, 0.0),
    }
)
_COLOUR_JITTER = 30  # a shape's colour moves by up to this much per channel
_SEGMENT_ID_STRIDE = 1000  # panoptic segment id = category_id * stride + (index in image + 1)


@dataclass(frozen=True)
class SplitPaths:
    """Where one split's files live under a synthetic dataset root."""

    images: Path
    sem_seg: Path
    panoptic: Path
    panoptic_json: Path
    panoptic_semseg: Path

    @classmethod
    def under(cls, root: str | Path, split: str) -> "SplitPaths":
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        root = Path(root)
        return cls(
            images=root / "images" / split,
            sem_seg=root / "annotations" / split,
            panoptic=root / f"panoptic_{split}",
            panoptic_json=root / f"panoptic_{split}.json",
            panoptic_semseg=root / f"panoptic_semseg_{split}",
        )


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`write_synthetic_dataset` wrote.

    Attributes:
        root: the dataset folder.
        vocabulary_file: ``root / vocabulary.txt``.
        class_names: K comma-separated synonym strings (``"circle, round shape"``), contiguous ids.
        is_thing: K flags.
        num_images: images per split, e.g. ``{"train": 64, "val": 16}``.
        image_size: S.
    """

    root: Path
    vocabulary_file: Path
    class_names: tuple[str, ...]
    is_thing: tuple[bool, ...]
    num_images: MappingProxyType
    image_size: int

    def paths(self, split: str) -> SplitPaths:
        return SplitPaths.under(self.root, split)


def synthetic_class_names() -> tuple[str, ...]:
    """The K classes as comma-separated synonym strings, name first."""
    return tuple(
        ", ".join((name, *SYNTHETIC_SYNONYMS.get(name, ()))) for name, _ in SYNTHETIC_CLASSES
    )


def write_synthetic_dataset(
    root: str | Path,
    *,
    num_train: int = 256,
    num_val: int = 32,
    image_size: int = 96,
    seed: int = 0,
) -> SyntheticDataset:
    """Write the dataset under ``root`` (created if needed; existing files are overwritten)."""
    for name, value, least in (("num_train", num_train, 1), ("num_val", num_val, 1)):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocabulary_file = root / VOCABULARY_FILE
    lines = [INVALID_CLASS_LINE]
    for k, (name, _) in enumerate(SYNTHETIC_CLASSES):
        lines.append(f"{k + 1}:" + ",".join((name, *SYNTHETIC_SYNONYMS.get(name, ()))))
    vocabulary_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    counts = {"train": num_train, "val": num_val}
    for split_index, split in enumerate(SPLITS):
        _write_split(SplitPaths.under(root, split), counts[split], image_size, seed, split_index)
        logger.info("wrote %d synthetic %s images to %s", counts[split], split, root)
    return SyntheticDataset(
        root=root,
        vocabulary_file=vocabulary_file,
        class_names=synthetic_class_names(),
        is_thing=tuple(is_thing for _, is_thing in SYNTHETIC_CLASSES),
        num_images=MappingProxyType(counts),
        image_size=image_size,
    )


def _write_split(paths: SplitPaths, count: int, size: int, seed: int, split_index: int) -> None:
    for folder in (paths.images, paths.sem_seg, paths.panoptic, paths.panoptic_semseg):
        folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        rng = np.random.default_rng([seed, split_index, index])
        image, semantic, panoptic, segments = _draw_sample(rng, size)
        stem = f"{index:05d}"
        Image.fromarray(image).save(paths.images / f"{stem}.jpg", quality=95)
        Image.fromarray(_semantic_with_ignore(semantic, panoptic, segments)).save(
            paths.sem_seg / f"{stem}.png"
        )
        Image.fromarray(id2rgb(panoptic)).save(paths.panoptic / f"{stem}.png")
        Image.fromarray(semantic).save(paths.panoptic_semseg / f"{stem}.png")
        images.append({"id": index, "file_name": f"{stem}.jpg", "height": size, "width": size})
        annotations.append(
            {"image_id": index, "file_name": f"{stem}.png", "segments_info": segments}
        )
    categories = [
        {
            "id": k + 1,
            "name": name,
            "supercategory": "shape" if is_thing else "ground",
            "isthing": int(is_thing),
            "color": list(_class_colour(name)),
        }
        for k, (name, is_thing) in enumerate(SYNTHETIC_CLASSES)
    ]
    content = {"images": images, "annotations": annotations, "categories": categories}
    paths.panoptic_json.write_text(json.dumps(content, indent=1), encoding="utf-8")


def _class_colour(name: str) -> tuple[int, int, int]:
    style = _THING_STYLES.get(name) or _STUFF_TEXTURES[name]
    return style[0]


def _draw_sample(
    rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """One image and its labels.

    Returns:
        image: (S, S, 3) uint8 RGB.
        semantic: (S, S) uint8 contiguous class ids, 255 where unlabeled (panoptic id 0).
        panoptic: (S, S) int64 segment ids, 0 = unlabeled.
        segments: COCO-panoptic segments_info of the visible segments.
    """
    names = [name for name, _ in SYNTHETIC_CLASSES]
    stuff_ids = [k for k, (_, is_thing) in enumerate(SYNTHETIC_CLASSES) if not is_thing]
    thing_ids = [k for k, (_, is_thing) in enumerate(SYNTHETIC_CLASSES) if is_thing]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # (S, S) each

    # ground: one stuff class, or two split by a line whose 1-px trace is unlabeled
    class_map = np.full((size, size), rng.choice(stuff_ids), dtype=np.int64)  # (S, S)
    void = np.zeros((size, size), dtype=bool)
    if rng.random() < 0.5:
        other = rng.choice([k for k in stuff_ids if k != class_map[0, 0]])
        y_left, y_right = rng.uniform(0.25 * size, 0.75 * size, size=2)
        line_y = y_left + (y_right - y_left) * xx / (size - 1)  # (S, S)
        class_map[yy > line_y] = other
        void = np.abs(yy - line_y) < 0.5
    image = np.zeros((size, size, 3), dtype=np.float64)
    for k in np.unique(class_map):
        region = class_map == k
        image[region] = _texture(rng, names[k], size, yy)[region]

    # panoptic ids: one segment per stuff class, then the shapes painted over it in order
    panoptic = np.zeros((size, size), dtype=np.int64)
    segment_classes: dict[int, int] = {}
    for k in np.unique(class_map).tolist():
        segment_id = (k + 1) * _SEGMENT_ID_STRIDE + len(segment_classes) + 1
        panoptic[(class_map == k) & ~void] = segment_id
        segment_classes[segment_id] = k
    for _ in range(rng.integers(1, 4)):
        k = int(rng.choice(thing_ids))
        mask = _shape_mask(rng, names[k], size)
        colour = np.asarray(_THING_STYLES[names[k]][0], dtype=np.float64)
        colour = colour + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
        image[mask] = colour + rng.normal(0.0, 8.0, size=(int(mask.sum()), 3))
        segment_id = (k + 1) * _SEGMENT_ID_STRIDE + len(segment_classes) + 1
        panoptic[mask] = segment_id
        segment_classes[segment_id] = k

    semantic = np.full((size, size), IGNORE_LABEL, dtype=np.uint8)  # (S, S)
    segments = []
    for segment_id, k in segment_classes.items():
        region = panoptic == segment_id
        if not region.any():  # fully hidden by a later shape
            continue
        semantic[region] = k
        ys, xs = np.nonzero(region)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]  # COCO [x, y, w, h]
        segments.append(
            {
                "id": segment_id,
                "category_id": k + 1,
                "iscrowd": 0,
                "area": int(region.sum()),
                "bbox": bbox,
            }
        )
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, semantic, panoptic, segments


def _texture(rng: np.random.Generator, name: str, size: int, yy: np.ndarray) -> np.ndarray:
    """(S, S, 3) float RGB: base colour + smooth noise + speckle + horizontal stripes."""
    base, smooth_amp, speckle_amp, stripe_amp = _STUFF_TEXTURES[name]
    grid = rng.normal(0.0, 1.0, size=(size // 8 + 2, size // 8 + 2)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(grid).resize((size, size), Image.BILINEAR))
    period = rng.uniform(6.0, 12.0)
    stripes = np.sin(2 * math.pi * yy / period + rng.uniform(0, 2 * math.pi) + smooth)  # (S, S)
    speckle = rng.normal(0.0, 1.0, size=(size, size, 1))
    shade = smooth_amp * smooth + stripe_amp * stripes  # (S, S)
    return np.asarray(base, dtype=np.float64) + shade[..., None] + speckle_amp * speckle


def _shape_mask(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """(S, S) bool mask of one shape of class ``name`` at a random place, size and rotation."""
    _, corners, inner_ratio = _THING_STYLES[name]
    radius = rng.uniform(size / 10, size / 5)
    cx, cy = rng.uniform(radius, size - radius, size=2)
    angle = rng.uniform(0.0, 2 * math.pi)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if corners == 0:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    else:
        points = []
        for i in range(corners):
            r = radius if i % 2 == 0 else radius * inner_ratio
            theta = angle + 2 * math.pi * i / corners
            points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _semantic_with_ignore(
    semantic: np.ndarray, panoptic: np.ndarray, segments: list[dict]
) -> np.ndarray:
    """The semantic label with 255 on a 2-px band along every boundary that touches a shape.

    semantic: (S, S) uint8; panoptic: (S, S) segment ids. Mimics the ignore borders of real labels.
    """
    thing_category_ids = {k + 1 for k, (_, is_thing) in enumerate(SYNTHETIC_CLASSES) if is_thing}
    thing_segment_ids = [s["id"] for s in segments if s["category_id"] in thing_category_ids]
    on_thing = np.isin(panoptic, thing_segment_ids)  # (S, S)
    border = np.zeros_like(on_thing)
    # one pixel on each side of a vertical, then a horizontal, change of segment
    edge = (panoptic[1:] != panoptic[:-1]) & (on_thing[1:] | on_thing[:-1])  # (S-1, S)
    border[1:] |= edge
    border[:-1] |= edge
    edge = (panoptic[:, 1:] != panoptic[:, :-1]) & (on_thing[:, 1:] | on_thing[:, :-1])  # (S, S-1)
    border[:, 1:] |= edge
    border[:, :-1] |= edge
    out = semantic.copy()
    out[border] = IGNORE_LABEL
    return out
