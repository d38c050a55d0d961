"""Pictures of a prediction: colour overlays with labels, legends, label-map and panoptic files.

Pure functions over numpy arrays and PIL (no matplotlib, no windows). Shapes: H, W image size;
K classes in the prediction's vocabulary (any number, also past 255).

The `prediction` arguments are :class:`maft_plus.predictor.Prediction` objects; only their
attributes are read (`task`, `label_map`, `segments`, `class_names`, `segment_map`), except by
:func:`enlarge_for_display`, which returns an enlarged copy.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .colors import class_color, instance_color
from .prediction import enlarge

if TYPE_CHECKING:
    from .prediction import Prediction, Segment

_TEXT_COLOR = (255, 255, 255)
_LABEL_BOX_COLOR = (24, 24, 24)
_LEGEND_BACKGROUND = (255, 255, 255)
_LEGEND_TEXT_COLOR = (20, 20, 20)
# The value of "no class" in a 8-bit and a 16-bit label-map png.
IGNORE_LABEL_8BIT = 255
IGNORE_LABEL_16BIT = 65535
# Pictures are enlarged until their shorter side has this many pixels, so that labels stay legible.
MIN_DISPLAY_SIZE = 512
# ... but never past this longer side (a 10 x 2000 strip would otherwise become 512 x 102400).
MAX_DISPLAY_SIDE = 4096


def segment_colors(prediction: Prediction) -> list[tuple[int, int, int]]:
    """One colour per segment of `prediction`, in the order of `prediction.segments`.

    Semantic segments and stuff take their class colour; in panoptic and instance predictions each
    thing takes a shade of its class colour, numbered per class in segment-id order.
    """
    segments = prediction.segments
    per_instance = prediction.task != "semantic"
    seen_per_class: dict[int, int] = {}
    colors = {}
    for position in sorted(range(len(segments)), key=lambda i: segments[i].id):
        segment = segments[position]
        if per_instance and segment.is_thing:
            index = seen_per_class.get(segment.label, 0)
            seen_per_class[segment.label] = index + 1
            colors[position] = instance_color(segment.label, index)
        else:
            colors[position] = class_color(segment.label)
    return [colors[i] for i in range(len(segments))]


def overlay(
    image: np.ndarray,
    prediction: Prediction,
    *,
    alpha: float = 0.5,
    draw_labels: bool = True,
    min_label_area: int | None = None,
) -> np.ndarray:
    """The image with each segment tinted in its colour, outlined, and optionally labelled.

    Args:
        image: (H, W, 3) uint8 RGB image the prediction was made on.
        prediction: its prediction; segment masks are (H, W).
        alpha: opacity of the segment colours, in [0, 1].
        draw_labels: write each segment's class name (and score for instances) in a dark box at the
            point of the segment farthest from its boundary.
        min_label_area: segments smaller than this many pixels get no label; by default
            max(48, H * W / 2000).

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    image = _check_image(image, prediction)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = image.shape[:2]
    colors = segment_colors(prediction)
    # Instances may overlap: paint the most confident last, so that it ends on top.
    order = sorted(range(len(prediction.segments)), key=lambda i: prediction.segments[i].score)

    color_layer = np.zeros((height, width, 3), dtype=np.float32)
    covered = np.zeros((height, width), dtype=bool)
    for i in order:
        mask = prediction.segments[i].mask
        color_layer[mask] = colors[i]
        covered |= mask
    canvas = image.astype(np.float32)
    canvas[covered] = (1.0 - alpha) * canvas[covered] + alpha * color_layer[covered]
    for i in order:
        mask = prediction.segments[i].mask
        # The image border is not an edge of the segment: erode with a True border.
        edge = mask & ~ndimage.binary_erosion(mask, border_value=1)
        canvas[edge] = colors[i]
    result = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    if not draw_labels or not prediction.segments:
        return result

    if min_label_area is None:
        min_label_area = max(48, height * width // 2000)
    font = _font(_font_size(height, width))
    pil_image = Image.fromarray(result)
    draw = ImageDraw.Draw(pil_image)
    placed: list[tuple[int, int, int, int]] = []
    areas = [int(segment.mask.sum()) for segment in prediction.segments]
    for i in sorted(range(len(areas)), key=lambda i: -areas[i]):
        segment = prediction.segments[i]
        if areas[i] < min_label_area:
            continue
        text = _label_text(prediction, segment)
        box = _label_box(draw, text, font, _inner_point(segment.mask), height, width)
        if any(_overlaps(box, other) for other in placed):
            continue  # a bigger segment's label is already there
        placed.append(box)
        draw.rectangle(box, fill=_LABEL_BOX_COLOR, outline=colors[i], width=1)
        draw.text((box[0] + 3, box[1] + 2), text, font=font, fill=_TEXT_COLOR)
    return np.asarray(pil_image, dtype=np.uint8).copy()


def display_size(height: int, width: int, *, min_size: int = MIN_DISPLAY_SIZE) -> tuple[int, int]:
    """The (height, width) to draw an image of this size at: enlarged, aspect kept, until its
    shorter side is `min_size` (or its longer side MAX_DISPLAY_SIDE, whichever comes first).

    Images already that big, and any image when `min_size` is 0, keep their size.
    """
    if height < 1 or width < 1:
        raise ValueError(f"display_size needs a positive height and width, got {height}x{width}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 (0: never enlarge), got {min_size}")
    short, long = min(height, width), max(height, width)
    scale = min(min_size / short, max(MAX_DISPLAY_SIDE / long, 1.0))
    if scale <= 1.0:
        return height, width
    return max(round(height * scale), 1), max(round(width * scale), 1)


def enlarge_for_display(
    image: np.ndarray, prediction: Prediction, *, min_size: int = MIN_DISPLAY_SIZE
) -> tuple[np.ndarray, Prediction]:
    """The image and its prediction at :func:`display_size`, for drawing an overlay on.

    Args:
        image: (H, W, 3) uint8 RGB image the prediction was made on.
        prediction: its prediction, (H, W) maps and masks.
        min_size: the shorter side to reach; 0 never enlarges.

    Returns:
        The (H', W', 3) image, resized bilinearly, and the prediction with every map and mask
        enlarged nearest-neighbour (:func:`maft_plus.prediction.enlarge`), so each pixel keeps
        a class of the original. Both come back as they were when no enlargement is needed.
    """
    image = _check_image(image, prediction)
    height, width = display_size(*image.shape[:2], min_size=min_size)
    if (height, width) == image.shape[:2]:
        return image, prediction
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).copy(), enlarge(prediction, height, width)


def legend(prediction: Prediction, *, width: int, font_size: int | None = None) -> np.ndarray:
    """A strip listing a colour swatch and the name of each class present, biggest area first.

    Entries fill as many columns as fit in `width`. Returns a (h, width, 3) uint8 RGB image whose
    height h fits all entries (one row saying "no segments" when there are none).
    """
    if width < 1:
        raise ValueError(f"legend width must be positive, got {width}")
    areas: dict[int, int] = {}
    for segment in prediction.segments:
        areas[segment.label] = areas.get(segment.label, 0) + int(segment.mask.sum())
    labels = sorted(areas, key=lambda label: (-areas[label], label))
    names = [_class_name(prediction, label) for label in labels] or ["no segments"]

    font = _font(font_size or _font_size(width, width))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = max(probe.textbbox((0, 0), "Ag", font=font)[3], 1)
    row_height = text_height + 8
    swatch = row_height - 6
    column_width = swatch + 24 + max(int(probe.textlength(name, font=font)) for name in names)
    num_columns = max(1, min(len(names), width // column_width))
    num_rows = -(-len(names) // num_columns)  # ceil
    strip = Image.new("RGB", (width, num_rows * row_height + 6), _LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for n, name in enumerate(names):
        column, row = divmod(n, num_rows)
        left, top = 6 + column * column_width, 4 + row * row_height
        if labels:
            draw.rectangle(
                (left, top + 2, left + swatch, top + 2 + swatch),
                fill=class_color(labels[n]),
                outline=_LEGEND_TEXT_COLOR,
            )
        draw.text((left + swatch + 8, top + 2), name, font=font, fill=_LEGEND_TEXT_COLOR)
    return np.asarray(strip, dtype=np.uint8).copy()


def label_map_image(label_map: np.ndarray, num_classes: int) -> Image.Image:
    """The (H, W) class-id map as an image to save as png.

    With num_classes <= 255 it is 8-bit (mode "L") and "no class" (-1) is 255; with more classes it
    is 16-bit (mode "I;16") and "no class" is 65535. Class ids are kept as they are.
    """
    if not 1 <= num_classes <= IGNORE_LABEL_16BIT:
        raise ValueError(f"num_classes must be in [1, 65535], got {num_classes}")
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(
            f"label_map must be an (H, W) integer array, got {label_map.dtype} {label_map.shape}"
        )
    if label_map.size and (label_map.min() < -1 or label_map.max() >= num_classes):
        raise ValueError(
            f"label_map values must be in [-1, {num_classes - 1}] (-1 = none), got "
            f"[{label_map.min()}, {label_map.max()}]"
        )
    if num_classes <= IGNORE_LABEL_8BIT:
        ids = np.where(label_map < 0, IGNORE_LABEL_8BIT, label_map).astype(np.uint8)
    else:
        ids = np.where(label_map < 0, IGNORE_LABEL_16BIT, label_map).astype(np.uint16)
    return Image.fromarray(ids)  # mode "L" for uint8, "I;16" for uint16


def panoptic_files(prediction: Prediction) -> tuple[Image.Image, dict]:
    """The COCO panoptic png and annotation of a panoptic prediction.

    Returns:
        The RGB image of panopticapi's ``id2rgb(segment_map)`` (0 = no segment), and a dict
        with "segments_info": one {"id", "category_id", "isthing", "score", "area"} per segment
        present in the map (category_id is the class id in `class_names`), and "categories":
        one {"id", "name", "isthing"} per class present.
    """
    if prediction.segment_map is None:
        raise ValueError(
            f"panoptic files need a panoptic prediction with a segment_map, got task "
            f"{prediction.task!r} without one"
        )
    segment_map = np.asarray(prediction.segment_map)
    ids, counts = np.unique(segment_map, return_counts=True)
    area_of = {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i != 0}
    by_id = {segment.id: segment for segment in prediction.segments}
    unknown = sorted(set(area_of) - set(by_id))
    if unknown:
        raise ValueError(f"segment_map holds ids {unknown} that no segment of the prediction has")
    segments_info, categories = [], {}
    for segment in sorted(prediction.segments, key=lambda s: s.id):
        if segment.id not in area_of:
            continue  # fully covered by other segments: not in the png
        segments_info.append(
            {
                "id": int(segment.id),
                "category_id": int(segment.label),
                "isthing": bool(segment.is_thing),
                "score": float(segment.score),
                "area": area_of[segment.id],
            }
        )
        categories[int(segment.label)] = {
            "id": int(segment.label),
            "name": _class_name(prediction, segment.label),
            "isthing": bool(segment.is_thing),
        }
    annotation = {
        "segments_info": segments_info,
        "categories": [categories[k] for k in sorted(categories)],
    }
    return Image.fromarray(id2rgb(segment_map)), annotation


def _check_image(image: np.ndarray, prediction: Prediction) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    if image.shape[:2] != prediction.label_map.shape:
        raise ValueError(
            f"image is {image.shape[:2]} but the prediction is {prediction.label_map.shape}"
        )
    return image


def _class_name(prediction: Prediction, label: int) -> str:
    names = prediction.class_names
    return names[label] if 0 <= label < len(names) else str(label)


def _label_text(prediction: Prediction, segment: Segment) -> str:
    if prediction.task == "instance" or (prediction.task == "panoptic" and segment.is_thing):
        return f"{segment.name} {segment.score:.2f}"
    return segment.name


def _inner_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of a non-empty (H, W) mask farthest from its boundary and the border."""
    rows, cols = np.nonzero(mask)
    top, left = rows.min(), cols.min()
    crop = mask[top : rows.max() + 1, left : cols.max() + 1]
    # Pad with False so that the image border counts as boundary too.
    distance = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
    # Of the (near-)farthest pixels, e.g. the ridge of a rectangle, take the one nearest their mean.
    ys, xs = np.nonzero(distance >= distance.max() - 0.5)
    nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(left + xs[nearest]), int(top + ys[nearest])


def _label_box(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont,
    center: tuple[int, int],
    height: int,
    width: int,
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a label box centred on `center`, moved inside the image."""
    _, _, text_width, text_height = draw.textbbox((0, 0), text, font=font)
    box_width, box_height = text_width + 6, text_height + 4
    left = min(max(center[0] - box_width // 2, 0), max(width - 1 - box_width, 0))
    top = min(max(center[1] - box_height // 2, 0), max(height - 1 - box_height, 0))
    return left, top, left + box_width, top + box_height


def _overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _font_size(height: int, width: int) -> int:
    # Below 12 pixels Pillow's bundled font loses its spaces; above 28 labels cover too much.
    return int(np.clip(round(min(height, width) / 32), 12, 28))


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled font; scalable when Pillow has FreeType, a fixed bitmap font otherwise.
    return ImageFont.load_default(size=size)
