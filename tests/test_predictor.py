"""Predictor on the tiny model: the three tasks, every image input, vocabularies and weights."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Instances
from PIL import Image

from maft_plus import predictor as predictor_module
from maft_plus.config import setup_cfg
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.predictor import PRESET_MODELS, TASKS, Predictor, load_rgb, to_prediction

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = "cat, kitty; dog; grass; sky"
NAMES = ["cat", "dog", "grass", "sky"]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    # Thresholds at 0 so that the random-init model still keeps panoptic segments.
    opts = ["MODEL.MAFT_PLUS.TEST.OBJECT_MASK_THRESHOLD", "0.0"]
    opts += ["MODEL.MAFT_PLUS.TEST.OVERLAP_THRESHOLD", "0.0"]
    return Predictor.from_preset("tiny", device="cpu", opts=opts)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def check_prediction(prediction, task: str, size: tuple[int, int]) -> None:
    """Types, shapes and consistency of segments with the maps, for any task."""
    assert prediction.task == task
    assert prediction.label_map.shape == size and prediction.label_map.dtype == np.int32
    assert prediction.class_names == NAMES
    for segment in prediction.segments:
        assert segment.mask.shape == size and segment.mask.dtype == bool
        assert segment.name == NAMES[segment.label] and isinstance(segment.score, float)
        assert segment.is_thing is True  # free text: every class is a thing
    ids = [s.id for s in prediction.segments]
    assert len(set(ids)) == len(ids)
    assert prediction.label_map.min() >= (0 if task == "semantic" else -1)
    assert prediction.label_map.max() < len(NAMES)


def test_semantic(predictor):
    prediction = predictor.predict(random_image(40, 56), VOCABULARY)
    check_prediction(prediction, "semantic", (40, 56))
    assert prediction.segment_map is None
    labels = sorted(s.label for s in prediction.segments)
    assert labels == np.unique(prediction.label_map).tolist()
    for segment in prediction.segments:
        assert segment.id == segment.label
        assert np.array_equal(segment.mask, prediction.label_map == segment.label)


def test_panoptic(predictor):
    prediction = predictor.predict(random_image(40, 56), VOCABULARY, task="panoptic")
    check_prediction(prediction, "panoptic", (40, 56))
    segment_map = prediction.segment_map
    assert segment_map.shape == (40, 56) and segment_map.dtype == np.int32
    assert prediction.segments, "the flattened tiny model should keep a segment"
    assert set(np.unique(segment_map).tolist()) <= {0} | {s.id for s in prediction.segments}
    assert np.array_equal(prediction.label_map == -1, segment_map == 0)
    for segment in prediction.segments:
        assert np.array_equal(segment.mask, segment_map == segment.id)
        assert (prediction.label_map[segment.mask] == segment.label).all()


def test_instance(predictor):
    prediction = predictor.predict(random_image(40, 56), VOCABULARY, task="instance")
    check_prediction(prediction, "instance", (40, 56))
    assert prediction.segments and prediction.segment_map is None
    covered = np.zeros((40, 56), dtype=bool)
    for segment in prediction.segments:
        covered |= segment.mask
    assert np.array_equal(covered, prediction.label_map >= 0)


def test_the_task_is_an_argument_and_unknown_tasks_are_refused(predictor, monkeypatch):
    configured = predictor.model.tasks
    seen = []
    forward = type(predictor.model).forward
    monkeypatch.setattr(
        type(predictor.model),
        "forward",
        lambda model, inputs, tasks=None: seen.append(tasks) or forward(model, inputs, tasks),
    )
    predictor.predict(random_image(8, 8), VOCABULARY, task="instance")
    assert seen == [TASKS["instance"]] and TASKS["instance"].instance
    assert not (TASKS["instance"].semantic or TASKS["instance"].panoptic)
    assert predictor.model.tasks == configured  # nothing set on the shared model
    with pytest.raises(ValueError, match="semantic, panoptic, instance"):
        predictor.predict(random_image(8, 8), VOCABULARY, task="depth")


def test_semantic_conversion_exact():
    vocab = Vocabulary.from_names(["a", "b", "c"], [True, False, True])
    sem_seg = torch.tensor(
        [[[0.9, 0.1], [0.2, 0.0]], [[0.0, 0.8], [0.6, 0.0]], [[0.1, 0.1], [0.2, 0.0]]]
    )  # (3, 2, 2); class c wins nowhere, class a also at the all-zero pixel (first argmax)
    scores, labels = sem_seg.max(dim=0)
    for output in (
        {"sem_seg": sem_seg},  # TEST.SEMANTIC_OUTPUT "scores"
        {"sem_seg_labels": labels, "sem_seg_confidence": scores},  # "labels"
    ):
        prediction = to_prediction(output, vocab, "semantic")
        assert prediction.label_map.tolist() == [[0, 1], [1, 0]]
        assert [(s.label, s.name, s.is_thing) for s in prediction.segments] == [
            (0, "a", True),
            (1, "b", False),
        ]
        assert prediction.segments[0].score == pytest.approx(0.45)
        assert prediction.segments[1].score == pytest.approx(0.7)


def test_panoptic_conversion_exact():
    vocab = Vocabulary.from_names(["a", "b"], [True, False])
    ids = torch.tensor([[0, 1], [2, 2]], dtype=torch.int32)
    info = [
        {"id": 1, "category_id": 1, "isthing": False, "score": 0.7},
        {"id": 2, "category_id": 0, "isthing": True, "score": 0.4},
    ]
    prediction = to_prediction({"panoptic_seg": (ids, info)}, vocab, "panoptic")
    assert prediction.label_map.tolist() == [[-1, 1], [0, 0]]
    assert prediction.segment_map.tolist() == [[0, 1], [2, 2]]
    assert [(s.id, s.label, s.is_thing) for s in prediction.segments] == [
        (1, 1, False),
        (2, 0, True),
    ]
    assert [s.score for s in prediction.segments] == pytest.approx([0.7, 0.4])


def test_instance_conversion_paints_the_best_instance_on_top():
    vocab = Vocabulary.from_names(["a", "b", "c"])
    instances = Instances((1, 3))
    instances.pred_masks = torch.tensor([[[1, 1, 0]], [[0, 1, 1]], [[0, 0, 0]]], dtype=torch.bool)
    instances.scores = torch.tensor([0.5, 0.9, 0.1])
    instances.pred_classes = torch.tensor([0, 1, 2])
    prediction = to_prediction({"instances": instances}, vocab, "instance")
    assert prediction.label_map.tolist() == [[0, 1, 1]]
    assert [(s.id, s.label) for s in prediction.segments] == [(1, 0), (2, 1), (3, 2)]
    assert [s.score for s in prediction.segments] == pytest.approx([0.5, 0.9, 0.1])
    assert prediction.segments[2].mask.sum() == 0


def test_numpy_pil_and_path_inputs_agree(predictor, tmp_path):
    image = random_image(20, 30, seed=1)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    expected = predictor.predict(image, VOCABULARY).label_map
    assert expected.shape == (20, 30)
    for source in (Image.fromarray(image), path, str(path)):
        assert np.array_equal(predictor.predict(source, VOCABULARY).label_map, expected)


def test_grayscale_rgba_and_palette_images_become_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    assert np.array_equal(load_rgb(Image.fromarray(gray)), np.stack([gray] * 3, axis=-1))
    rgba = np.dstack([random_image(3, 4), np.zeros((3, 4), np.uint8)])  # fully transparent
    assert np.array_equal(load_rgb(Image.fromarray(rgba)), rgba[..., :3])
    palette = Image.fromarray(np.array([[0, 1], [1, 2]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    assert load_rgb(palette)[1, 1].tolist() == [0, 0, 255]
    palette.info["transparency"] = 0
    assert load_rgb(palette)[0, 1].tolist() == [0, 255, 0]


def test_16_bit_grayscale_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 1000, 40000]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)  # a 16-bit PNG
    rgb = load_rgb(path)
    expected = np.array([[0, 1, 128], [255, 4, 156]], dtype=np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert np.array_equal(rgb, np.repeat(expected[:, :, None], 3, axis=2))


def test_exif_orientation_is_applied(predictor, tmp_path):
    image = Image.fromarray(random_image(20, 36))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_rgb(path).shape == (36, 20, 3)
    prediction = predictor.predict(path, VOCABULARY)
    assert prediction.label_map.shape == (36, 20)
    assert predictor.predict(Image.open(path), VOCABULARY).label_map.shape == (36, 20)


def test_one_pixel_image(predictor):
    for task in TASKS:
        prediction = predictor.predict(random_image(1, 1), VOCABULARY, task=task)
        assert prediction.label_map.shape == (1, 1)


def output_sizes(predictor) -> list:
    """Record the output (height, width) the model is asked for at each call."""
    sizes = []
    predictor.model.register_forward_pre_hook(
        lambda m, args: sizes.append((args[0][0]["height"], args[0][0]["width"]))
    )
    return sizes


@pytest.mark.parametrize("task", ["panoptic", "instance"])
def test_masks_of_an_image_over_the_budget_are_computed_smaller_and_enlarged(task, monkeypatch):
    predictor = Predictor.from_preset("tiny", device="cpu")
    monkeypatch.setattr(predictor_module, "MAX_MASK_OUTPUT_PIXELS", 600)  # 40 x 60 is 4x that
    sizes = output_sizes(predictor)
    prediction = predictor.predict(random_image(40, 60), VOCABULARY, task=task)
    assert sizes == [(20, 30)]
    check_prediction(prediction, task, (40, 60))
    blocks = prediction.label_map.reshape(20, 2, 30, 2)  # nearest neighbour: constant 2x2 blocks
    assert (blocks == blocks[:, :1, :, :1]).all()
    for segment in prediction.segments:
        assert (segment.mask.reshape(20, 2, 30, 2) == segment.mask[::2, None, ::2, None]).all()
    if task == "panoptic":
        for segment in prediction.segments:
            assert np.array_equal(segment.mask, prediction.segment_map == segment.id)


def test_semantic_output_of_a_very_large_image_is_full_size(monkeypatch):
    predictor = Predictor.from_preset("tiny", device="cpu")
    monkeypatch.setattr(predictor_module, "MAX_MASK_OUTPUT_PIXELS", 600)
    sizes = output_sizes(predictor)
    prediction = predictor.predict(random_image(3000, 4000), VOCABULARY)  # 12 megapixels
    assert sizes == [(3000, 4000)]
    check_prediction(prediction, "semantic", (3000, 4000))


def test_images_beyond_pils_pixel_limit_are_named(predictor, tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(random_image(20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses over 2x this: 400 > 200
    with pytest.raises(ValueError, match=r"huge.png has more pixels .*PIL.Image.MAX_IMAGE_PIXELS"):
        predictor.predict(path, VOCABULARY)


def test_bad_images_are_named(predictor, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n definitely not the rest of a png")
    with pytest.raises(ValueError, match="corrupt.png"):
        predictor.predict(corrupt, VOCABULARY)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.jpg"):
        predictor.predict(str(text), VOCABULARY)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        predictor.predict(tmp_path / "absent.png", VOCABULARY)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        predictor.predict(np.zeros((8, 8), np.uint8), VOCABULARY)
    with pytest.raises(TypeError, match="numpy array"):
        predictor.predict(torch.zeros(3, 8, 8), VOCABULARY)


def test_vocabulary_is_set_only_when_it_changes(predictor, monkeypatch):
    calls = []
    original = predictor.model.set_vocabulary
    monkeypatch.setattr(
        predictor.model, "set_vocabulary", lambda *a: (calls.append(a), original(*a))
    )
    image = random_image(8, 8)
    predictor.predict(image, "cat; dog")  # differs from the other tests' vocabulary
    assert len(calls) == 1
    predictor.predict(image, ["cat", "dog"])  # the same vocabulary, spelled differently
    predictor.predict(image, " cat;dog ")
    assert len(calls) == 1
    predictor.predict(image, "voc")
    assert len(calls) == 2 and predictor.model.vocabulary.num_classes == 20
    prediction = predictor.predict(image, "coco", task="panoptic")
    assert len(prediction.class_names) == 133
    assert all(s.is_thing == (s.label < 80) for s in prediction.segments)


def test_presets_and_config_errors(monkeypatch, tmp_path):
    assert set(PRESET_MODELS) == {"large-semantic", "base-semantic", "large-panoptic", "tiny"}
    for config in PRESET_MODELS.values():
        assert (REPO / config).is_file()
    with pytest.raises(ValueError, match="large-semantic"):
        Predictor.from_preset("huge")
    monkeypatch.setattr(predictor_module, "REPO_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="configs"):
        Predictor.from_preset("tiny")


def test_weights_load_and_match_the_saved_model(tmp_path, monkeypatch, caplog):
    torch.manual_seed(123)  # weights unlike those of a fresh tiny model
    model = build_model(setup_cfg(str(REPO / PRESET_MODELS["tiny"]))).eval()
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)

    monkeypatch.chdir(tmp_path)  # presets never depend on the working directory
    with caplog.at_level(logging.WARNING, logger="maft_plus.predictor"):
        Predictor.from_preset("tiny", device="cpu")
    assert "only the pretrained CLIP" in caplog.text
    (tmp_path / "model.pkl").write_bytes(b"pickled")
    with pytest.raises(ValueError, match="model.pkl"):
        Predictor.from_preset("tiny", weights="model.pkl", device="cpu")
    loaded = Predictor.from_preset("tiny", weights="tiny.pth", device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key

    image = random_image(64, 64)  # already at the test size: no resize
    prediction = loaded.predict(image, VOCABULARY)
    model.set_vocabulary(["cat, kitty", "dog", "grass", "sky"])
    with torch.no_grad():
        output = model([{"image": torch.as_tensor(image).permute(2, 0, 1)}])[0]  # (3, H, W)
    expected = to_prediction(output, model.vocabulary, "semantic")
    assert np.array_equal(prediction.label_map, expected.label_map)
    assert [(s.label, s.score) for s in prediction.segments] == [
        (s.label, s.score) for s in expected.segments
    ]


def test_min_score_drops_weak_instances():
    vocab = Vocabulary.from_names(["a", "b"])
    instances = Instances((1, 2))
    instances.pred_masks = torch.tensor([[[1, 0]], [[0, 1]]], dtype=torch.bool)
    instances.scores = torch.tensor([0.6, 0.2])
    instances.pred_classes = torch.tensor([0, 1])
    prediction = to_prediction({"instances": instances}, vocab, "instance", min_score=0.5)
    assert [s.label for s in prediction.segments] == [0]
    assert prediction.label_map.tolist() == [[0, -1]]
