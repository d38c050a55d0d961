"""demo/demo.py end to end with the tiny random-init preset on CPU: images, panoptic, video."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from panopticapi.utils import rgb2id
from PIL import Image
from script_loader import load_script

from maft_plus.prediction import enlarge
from maft_plus.predictor import Prediction, Predictor, Segment
from maft_plus.visualization import class_color

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--preset", "tiny", "--device", "cpu"]
CLASSES = ["--vocabulary", "cat; dog, puppy; sky"]


@pytest.fixture(scope="module")
def demo():
    """demo/demo.py as a module (it is a script, not part of the package)."""
    return load_script("demo/demo.py")


@pytest.fixture
def recorded_class_names(monkeypatch) -> list[list[str]]:
    """The class names of every prediction the demo makes, in order."""
    recorded = []
    predict = Predictor.predict

    def spy(self, *args, **kwargs):
        prediction = predict(self, *args, **kwargs)
        recorded.append(prediction.class_names)
        return prediction

    monkeypatch.setattr(Predictor, "predict", spy)
    return recorded


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (48, 64)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)  # (H, W, 3)
        Image.fromarray(pixels).save(folder / name)


def test_folder_skips_non_images_and_reports_a_corrupt_one(demo, tmp_path, capsys):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_images(folder, ["a.jpg", "b.jpg"])
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    code = demo.main([*MODEL, *CLASSES, "--input", str(folder), "--output", str(out)])

    assert code == 0
    expected = {f"{stem}_{kind}.png" for stem in "ab" for kind in ("overlay", "labels")}
    assert {p.name for p in out.iterdir()} == expected
    overlay = Image.open(out / "a_overlay.png")
    # Enlarged for display: the shorter side 48 -> 512, so 64 -> 683; a legend strip below.
    assert overlay.mode == "RGB" and overlay.width == 683 and overlay.height > 512
    labels = np.array(Image.open(out / "a_labels.png"))
    assert labels.shape == (48, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}  # semantic: every pixel has one of 3 classes
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err
    summary = captured.out.strip().splitlines()[-1]
    assert summary.startswith("2 images segmented, 1 skipped: ") and "broken.jpg" in summary
    assert "notes.txt" not in captured.out + captured.err


def test_glob_input_and_nothing_readable(demo, tmp_path, capsys):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_images(folder, ["one.png", "two.jpg", "three.jpg"])

    assert (
        demo.main([*MODEL, *CLASSES, "--input", str(folder / "t*.jpg"), "--output", str(out)]) == 0
    )
    assert sorted(p.name for p in out.glob("*_overlay.png")) == [
        "three_overlay.png",
        "two_overlay.png",
    ]
    assert "2 images segmented, 0 skipped" in capsys.readouterr().out

    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    missing = str(folder / "*.gif")
    code = demo.main(
        [*MODEL, *CLASSES, "--input", str(tmp_path / "bad.jpg"), missing, "--output", str(out)]
    )
    assert code == 1
    assert "0 images segmented, 2 skipped" in capsys.readouterr().out


def test_panoptic_task_writes_png_and_json(demo, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_images(folder, ["street.jpg"])
    args = [*MODEL, *CLASSES, "--task", "panoptic", "--no-labels"]

    assert demo.main([*args, "--input", str(folder / "street.jpg"), "--output", str(out)]) == 0

    ids = rgb2id(np.array(Image.open(out / "street_panoptic.png")))  # (H, W)
    assert ids.shape == (48, 64)
    annotation = json.loads((out / "street_panoptic.json").read_text())
    assert annotation["file_name"] == "street_panoptic.png"
    info = annotation["segments_info"]
    assert {s["id"] for s in info} == set(np.unique(ids)) - {0}
    assert all(s["area"] == int((ids == s["id"]).sum()) for s in info)
    assert info and all(0 <= s["category_id"] < 3 for s in info)
    assert (out / "street_overlay.png").is_file() and (out / "street_labels.png").is_file()


def blobs_prediction(prediction: Prediction) -> Prediction:
    """`prediction` with its label map replaced by hand-drawn blobs of its 3 classes: a disc of
    class 0 and a box and a single pixel of class 2 on class 1 (the random-init model predicts one
    class everywhere)."""
    height, width = prediction.label_map.shape
    rows, cols = np.mgrid[:height, :width]  # (H, W) each
    label_map = np.ones((height, width), dtype=np.int32)
    label_map[(rows - 30) ** 2 + (cols - 34) ** 2 < 20**2] = 0
    label_map[60:90, 10:50] = 2
    label_map[80, 80] = 2
    names = prediction.class_names
    segments = [
        Segment(k, k, names[k], 0.5, False, label_map == k) for k in np.unique(label_map).tolist()
    ]
    return Prediction("semantic", label_map, segments, names)


@pytest.fixture
def blob_predictions(monkeypatch) -> list[Prediction]:
    """The model runs, but the demo gets :func:`blobs_prediction` of each prediction (recorded)."""
    recorded = []
    predict = Predictor.predict

    def replace(self, *args, **kwargs):
        recorded.append(blobs_prediction(predict(self, *args, **kwargs)))
        return recorded[-1]

    monkeypatch.setattr(Predictor, "predict", replace)
    return recorded


def test_small_images_are_enlarged_for_the_overlay_only(demo, tmp_path, blob_predictions):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_images(folder, ["small.png"], size=(96, 96))
    rgb = np.array(Image.open(folder / "small.png"))  # (96, 96, 3)
    args = ["--input", str(folder / "small.png"), "--no-labels"]

    assert demo.main([*MODEL, *CLASSES, *args, "--output", str(out)]) == 0

    (prediction,) = blob_predictions
    labels = np.array(Image.open(out / "small_labels.png"))
    assert labels.shape == (96, 96)  # data: the image's own size
    np.testing.assert_array_equal(labels, prediction.label_map)
    picture = np.array(Image.open(out / "small_overlay.png"))
    assert picture.shape[1] == 512 and picture.shape[0] > 512  # + the legend strip
    picture = picture[:512].astype(np.int64)  # (512, 512, 3) the overlay without the legend

    # Every pixel is the bilinearly enlarged image tinted by (or, on an outline, painted in) the
    # colour of its class in the nearest-neighbour enlargement of the 96x96 label map.
    big_labels = enlarge(prediction, 512, 512).label_map  # (512, 512)
    source = ((np.arange(512) + 0.5) * 96 / 512).astype(int)  # (512,) nearest source, by hand
    np.testing.assert_array_equal(big_labels, prediction.label_map[source[:, None], source])
    colors = np.array([class_color(k) for k in range(3)])[big_labels]  # (512, 512, 3)
    big_rgb = np.asarray(Image.fromarray(rgb).resize((512, 512), Image.Resampling.BILINEAR))
    tinted = np.all(np.abs(picture - np.round(0.5 * big_rgb + 0.5 * colors)) <= 1, axis=-1)
    outline = np.all(picture == colors, axis=-1)  # (512, 512)
    assert (tinted | outline).all(), f"{(~(tinted | outline)).sum()} pixels disagree"
    assert 0 < (outline & ~tinted).mean() < 0.1  # one-pixel outlines, drawn at the enlarged size
    lone = outline[source == 80][:, source == 80]  # the lone pixel, now a block of 5 or 6 square
    assert lone[[0, -1]].all() and lone[:, [0, -1]].all() and not lone[1:-1, 1:-1].any()

    plain = tmp_path / "plain"
    assert (
        demo.main([*MODEL, *CLASSES, *args, "--output", str(plain), "--min-display-size", "0"]) == 0
    )
    assert Image.open(plain / "small_overlay.png").width == 96


def write_video(path: Path, num_frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    assert writer.isOpened()
    for n in range(num_frames):
        frame = np.full((64, 64, 3), 40 * n, dtype=np.uint8)  # (H, W, 3) BGR
        cv2.rectangle(frame, (8 + 4 * n, 8), (40 + 4 * n, 40), (0, 200, 255), -1)
        writer.write(frame)
    writer.release()


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_video_gives_an_overlay_video_with_every_frame(demo, tmp_path, capsys):
    video, out = tmp_path / "clip.mp4", tmp_path / "out"
    write_video(video, 5)
    assert len(read_frames(video)) == 5

    assert demo.main([*MODEL, *CLASSES, "--video", str(video), "--output", str(out)]) == 0
    frames = read_frames(out / "clip_overlay.mp4")
    assert len(frames) == 5 and frames[0].shape == (512, 512, 3)  # enlarged for display
    assert "5 frames segmented" in capsys.readouterr().out

    short = tmp_path / "short"
    args = ["--video", str(video), "--max-frames", "2", "--output", str(short)]
    assert demo.main([*MODEL, *CLASSES, *args, "--min-display-size", "0"]) == 0
    frames = read_frames(short / "clip_overlay.mp4")
    assert len(frames) == 2 and frames[0].shape == (64, 64, 3)  # 0: the frames' own size


def test_vocabulary_file_and_preset(demo, tmp_path, recorded_class_names):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_images(folder, ["x.jpg"])
    vocabulary_file = tmp_path / "classes.txt"
    vocabulary_file.write_text("1:zebra\n2:giraffe,camelopard\n3:grass\n")
    inputs = ["--input", str(folder), "--output", str(out)]

    assert demo.main([*MODEL, "--vocabulary-file", str(vocabulary_file), *inputs]) == 0
    assert demo.main([*MODEL, "--vocabulary-preset", "voc20", *inputs]) == 0

    assert recorded_class_names[0] == ["zebra", "giraffe", "grass"]
    assert len(recorded_class_names[1]) == 20 and "aeroplane" in recorded_class_names[1]


def test_bad_arguments_are_refused_before_building_a_model(demo, tmp_path, capsys):
    base = [*MODEL, "--input", str(tmp_path), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        demo.main([*base, "--vocabulary-file", str(tmp_path / "missing.txt")])
    assert exit_info.value.code == 2 and "missing.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main([*base, "--", "MODEL.DEVICE"])  # a KEY without its VALUE
    assert "KEY VALUE" in capsys.readouterr().err
    assert demo.main([*base, "--vocabulary", " ; "]) == 2
    assert "bad vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, "demo/demo.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--vocabulary-preset" in result.stdout and "_panoptic.json" in result.stdout
