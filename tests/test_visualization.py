"""Colours, overlays, legends, label-map and panoptic files of maft_plus.visualization."""

import numpy as np
import pytest
from panopticapi.utils import rgb2id
from PIL import Image

from maft_plus.predictor import Prediction, Segment
from maft_plus.visualization import (
    MAX_DISPLAY_SIDE,
    class_color,
    display_size,
    enlarge_for_display,
    instance_color,
    label_map_image,
    legend,
    overlay,
    panoptic_files,
    segment_colors,
)

H, W = 64, 80


def box_mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def make_prediction(task: str = "semantic") -> Prediction:
    """Sky (stuff) on the top half, two cats (things) below, the bottom-right corner unlabelled."""
    names = ["sky", "cat", "dog"]
    masks = [box_mask(0, 0, 32, W), box_mask(32, 0, 64, 36), box_mask(32, 40, 56, 60)]
    labels, things = [0, 1, 1], [False, True, True]
    segments = [
        Segment(i + 1, labels[i], names[labels[i]], 0.9 - 0.1 * i, things[i], masks[i])
        for i in range(3)
    ]
    label_map = np.full((H, W), -1, dtype=np.int32)
    segment_map = np.zeros((H, W), dtype=np.int32)
    for segment in segments:
        label_map[segment.mask] = segment.label
        segment_map[segment.mask] = segment.id
    return Prediction(task, label_map, segments, names, segment_map if task == "panoptic" else None)


def gray_image() -> np.ndarray:
    return np.full((H, W, 3), 128, dtype=np.uint8)


def test_class_colors_are_deterministic_distinct_and_not_black_or_white():
    colors = [class_color(k) for k in range(1000)]
    assert colors == [class_color(k) for k in range(1000)]
    assert len(set(colors)) == 1000
    rgb = np.array(colors, dtype=np.float64)  # (1000, 3)
    assert np.all(np.linalg.norm(rgb[1:] - rgb[:-1], axis=1) > 100)  # neighbours far apart
    first = rgb[:20]
    distances = np.linalg.norm(first[:, None] - first[None], axis=-1)  # (20, 20)
    assert distances[~np.eye(20, dtype=bool)].min() > 40
    assert rgb.max(axis=1).min() >= 150  # not near black
    assert rgb.min(axis=1).max() <= 160  # not near white
    assert all(isinstance(c, int) and 0 <= c <= 255 for color in colors for c in color)
    assert class_color(np.int64(7)) == class_color(7)


@pytest.mark.parametrize("label", [-1, 1.5, True, "3"])
def test_class_color_rejects_bad_labels(label):
    with pytest.raises(ValueError, match="non-negative int"):
        class_color(label)


def test_instances_of_one_class_get_different_shades():
    assert instance_color(5, 0) == class_color(5)
    shades = {instance_color(5, i) for i in range(5)}
    assert len(shades) == 5
    panoptic = segment_colors(make_prediction("panoptic"))
    assert panoptic[1] != panoptic[2]  # the two cats
    semantic = segment_colors(make_prediction("semantic"))
    assert semantic[1] == semantic[2] == class_color(1)


def test_overlay_tints_segments_and_leaves_the_rest():
    prediction = make_prediction()
    image = gray_image()
    result = overlay(image, prediction, alpha=0.5, draw_labels=False)
    assert result.shape == (H, W, 3) and result.dtype == np.uint8
    sky_inside = result[10, 10].astype(int)
    expected = np.round(0.5 * 128 + 0.5 * np.array(class_color(0)))
    np.testing.assert_allclose(sky_inside, expected, atol=1)
    assert np.array_equal(result[60, 70], image[60, 70])  # no segment there
    opaque = overlay(image, prediction, alpha=1.0, draw_labels=False)
    assert tuple(opaque[45, 10]) == class_color(1)
    assert not np.array_equal(image, overlay(image, prediction, alpha=0.0, draw_labels=False))


def test_overlay_draws_labels_only_for_big_enough_segments():
    prediction = make_prediction()
    image = gray_image()
    plain = overlay(image, prediction, draw_labels=False)
    labelled = overlay(image, prediction, draw_labels=True)
    changed = np.any(plain != labelled, axis=-1)  # (H, W)
    assert changed[:32].any() and changed[32:].any()  # the sky label and a cat label
    assert not (plain.min(axis=-1) > 200).any()
    assert (labelled.min(axis=-1) > 200).any()  # white text
    sky_label_columns = np.nonzero(changed[:32].any(axis=0))[0]
    assert abs(sky_label_columns.mean() - W / 2) < 4  # centred on the ridge of the sky rectangle
    no_labels = overlay(image, prediction, draw_labels=True, min_label_area=H * W)
    assert np.array_equal(no_labels, plain)


def test_instance_labels_carry_the_score():
    semantic = overlay(gray_image(), make_prediction("semantic"))
    instance = make_prediction("instance")
    assert not np.array_equal(semantic, overlay(gray_image(), instance))


def test_overlay_rejects_a_mismatched_image():
    with pytest.raises(ValueError, match="prediction is"):
        overlay(np.zeros((H + 1, W, 3), dtype=np.uint8), make_prediction())
    with pytest.raises(ValueError, match="uint8"):
        overlay(np.zeros((H, W, 3), dtype=np.float32), make_prediction())


@pytest.mark.parametrize(
    ("size", "min_size", "expected"),
    [
        ((96, 96), 512, (512, 512)),
        ((48, 64), 512, (512, 683)),  # the shorter side reaches 512, the aspect is kept
        ((300, 40), 512, (3840, 512)),
        ((600, 800), 512, (600, 800)),  # big enough already
        ((96, 96), 0, (96, 96)),  # 0: never enlarge
        ((10, 2000), 512, (20, MAX_DISPLAY_SIDE)),  # the longer side stops the enlargement
        ((10, 5000), 512, (10, 5000)),  # longer than that already: as it is
    ],
)
def test_display_size(size, min_size, expected):
    assert display_size(*size, min_size=min_size) == expected


def test_display_size_rejects_bad_sizes():
    with pytest.raises(ValueError, match="min_size"):
        display_size(10, 10, min_size=-1)
    with pytest.raises(ValueError, match="positive height and width"):
        display_size(0, 10)


def test_enlarge_for_display_keeps_every_pixel_class():
    prediction = make_prediction("panoptic")
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    big_image, big = enlarge_for_display(image, prediction, min_size=256)
    assert big_image.shape == (256, 320, 3) and big_image.dtype == np.uint8
    assert big.label_map.shape == big.segment_map.shape == (256, 320)
    np.testing.assert_array_equal(
        big.label_map, np.repeat(np.repeat(prediction.label_map, 4, 0), 4, 1)
    )
    assert all(
        s.mask.shape == (256, 320) and s.mask.sum() == 16 * p.mask.sum()
        for s, p in zip(big.segments, prediction.segments, strict=True)
    )
    bilinear = Image.fromarray(image).resize((320, 256), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(big_image, np.asarray(bilinear))
    same_image, same = enlarge_for_display(image, prediction, min_size=64)
    assert same_image is image and same is prediction
    with pytest.raises(ValueError, match="prediction is"):
        enlarge_for_display(image[:10], prediction)


def test_legend_shows_swatches_of_present_classes_only():
    strip = legend(make_prediction(), width=200)
    assert strip.ndim == 3 and strip.shape[1:] == (200, 3) and strip.dtype == np.uint8
    colors = {tuple(c) for c in strip.reshape(-1, 3)}
    assert class_color(0) in colors and class_color(1) in colors
    assert class_color(2) not in colors  # "dog" is in the vocabulary but not in the image
    empty = make_prediction()
    empty.segments = []
    assert legend(empty, width=120).shape[1] == 120


def test_label_map_image_is_8_bit_up_to_255_classes(tmp_path):
    label_map = np.array([[-1, 0], [3, 254]], dtype=np.int32)
    image = label_map_image(label_map, 255)
    assert image.mode == "L"
    image.save(tmp_path / "labels.png")
    assert np.array_equal(np.array(Image.open(tmp_path / "labels.png")), [[255, 0], [3, 254]])


def test_label_map_image_is_16_bit_past_255_classes(tmp_path):
    label_map = np.array([[-1, 0], [255, 299]], dtype=np.int32)
    image = label_map_image(label_map, 300)
    assert image.mode == "I;16"
    image.save(tmp_path / "labels.png")
    loaded = np.array(Image.open(tmp_path / "labels.png"))
    assert np.array_equal(loaded, [[65535, 0], [255, 299]])


def test_label_map_image_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match=r"\[-1, 9\]"):
        label_map_image(np.array([[10]]), 10)
    with pytest.raises(ValueError, match="integer"):
        label_map_image(np.zeros((2, 2), dtype=np.float32), 10)


def test_panoptic_files_ids_match_the_png():
    prediction = make_prediction("panoptic")
    hidden = Segment(9, 2, "dog", 0.3, True, np.zeros((H, W), dtype=bool))
    prediction.segments.append(hidden)  # in no pixel: not in the files
    png, annotation = panoptic_files(prediction)
    assert png.mode == "RGB" and png.size == (W, H)
    ids = rgb2id(np.array(png))
    info = {s["id"]: s for s in annotation["segments_info"]}
    assert set(info) == set(np.unique(ids)) - {0} == {1, 2, 3}
    for segment_id, entry in info.items():
        assert entry["area"] == int((ids == segment_id).sum())
    assert info[1] == {"id": 1, "category_id": 0, "isthing": False, "score": 0.9, "area": 32 * W}
    assert info[2]["category_id"] == info[3]["category_id"] == 1 and info[2]["isthing"]
    assert annotation["categories"] == [
        {"id": 0, "name": "sky", "isthing": False},
        {"id": 1, "name": "cat", "isthing": True},
    ]


def test_panoptic_files_need_a_segment_map():
    with pytest.raises(ValueError, match="'semantic'"):
        panoptic_files(make_prediction("semantic"))
    prediction = make_prediction("panoptic")
    prediction.segment_map[0, 0] = 42
    with pytest.raises(ValueError, match=r"\[42\]"):
        panoptic_files(prediction)
