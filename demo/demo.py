"""Segment images, a video or a webcam stream with MAFT+ and save pictures of the result.

    python demo/demo.py --preset large-semantic --input photos/ --output out/
    python demo/demo.py --preset tiny --input 'photos/*.jpg' street.png --output out/ \\
        --vocabulary "car; person, pedestrian; road; sky"
    python demo/demo.py --config-file CFG --weights W --task panoptic --input a.jpg --output out/ \\
        -- MODEL.DEVICE cpu
    python demo/demo.py --preset tiny --video clip.mp4 --max-frames 100 --output out/
    python demo/demo.py --preset tiny --webcam --camera-index 0 --output out/

Per image STEM it writes, under --output:
    STEM_overlay.png    the image with coloured, labelled segments, a legend strip below; an image
                        whose shorter side is under --min-display-size (default 512) is enlarged
                        first (bilinear; the segments nearest-neighbour) so the labels stay legible
    STEM_labels.png     class id per pixel: 8-bit with 255 = none up to 255 classes, else 16-bit
                        with 65535 = none (see maft_plus.visualization.label_map_image)
    STEM_panoptic.png   panoptic task only: COCO panoptic png (id = R + 256 G + 256^2 B) and
    STEM_panoptic.json  its segments_info (category_id indexes the vocabulary's classes)
Inputs are files, folders (their images, not recursive) and quoted glob patterns. An unreadable
image is reported and skipped; the exit code is non-zero only when no image could be segmented.

A video gives STEM_overlay.mp4 and the webcam webcam_overlay.mp4 (mp4v codec), one overlay per
frame (enlarged like the images), until --max-frames or Ctrl-C. The webcam path is untested (no
camera where it was written).

Config overrides (KEY VALUE ...) come last; after --input, separate them with "--".
"""

import argparse
import glob
import json
import logging
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from maft_plus.allocator import retain_freed_memory
from maft_plus.data.vocabulary.presets import PRESETS, parse_vocabulary
from maft_plus.predictor import PRESET_MODELS, TASKS, Prediction, Predictor, load_rgb
from maft_plus.visualization import (
    MIN_DISPLAY_SIZE,
    enlarge_for_display,
    label_map_image,
    legend,
    overlay,
    panoptic_files,
)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_VOCABULARY = "coco"
DEFAULT_FPS = 30.0  # when a video or camera does not say its frame rate

logger = logging.getLogger("maft_plus.demo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files, folders or quoted glob patterns")
    source.add_argument("--video", type=Path, help="a video file (read with OpenCV)")
    source.add_argument("--webcam", action="store_true", help="the camera of --camera-index")
    parser.add_argument("--camera-index", type=int, default=0, help="OpenCV camera index")
    parser.add_argument("--output", type=Path, required=True, help="output folder (created)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", type=Path, help="a MAFT+ config file")
    model.add_argument("--preset", choices=sorted(PRESET_MODELS), help="a preset model")
    parser.add_argument("--weights", help="checkpoint: path, http(s) URL or hf:// id")
    parser.add_argument("--device", help='"cpu", "cuda", ... (default: cuda when available)')
    vocabulary = parser.add_mutually_exclusive_group()
    vocabulary.add_argument("--vocabulary", help='class names, e.g. "cat, kitty; dog; sky"')
    vocabulary.add_argument("--vocabulary-file", type=Path, help="id:name1,name2 per line")
    vocabulary.add_argument(
        "--vocabulary-preset", choices=PRESETS, help=f"default: {DEFAULT_VOCABULARY}"
    )
    parser.add_argument("--task", choices=list(TASKS), default="semantic")
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.5,
        help="instance task: hide instances scoring below this (default 0.5)",
    )
    parser.add_argument("--no-labels", action="store_true", help="no class names on the overlay")
    parser.add_argument(
        "--min-display-size",
        type=int,
        default=MIN_DISPLAY_SIZE,
        metavar="PIXELS",
        help="enlarge overlays whose shorter side is below this (the label and panoptic files "
        f"keep the image's size); 0 never enlarges (default {MIN_DISPLAY_SIZE})",
    )
    parser.add_argument("--max-frames", type=int, help="video/webcam: stop after this many frames")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)

    if args.opts[:1] == ["--"]:
        args.opts = args.opts[1:]
    if len(args.opts) % 2:
        parser.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    if args.config_file is not None and not args.config_file.is_file():
        parser.error(f"--config-file: no such file: {args.config_file}")
    if args.video is not None and not args.video.is_file():
        parser.error(f"--video: no such file: {args.video}")
    if args.vocabulary_file is not None and not args.vocabulary_file.is_file():
        parser.error(f"--vocabulary-file: no such file: {args.vocabulary_file}")
    if args.min_display_size < 0:
        parser.error(
            f"--min-display-size must be >= 0 (0: never enlarge), got {args.min_display_size}"
        )
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames must be positive, got {args.max_frames}")
    return args


def vocabulary_spec(args: argparse.Namespace) -> str:
    """What `Predictor.predict` gets as the vocabulary."""
    if args.vocabulary is not None:
        return args.vocabulary
    if args.vocabulary_file is not None:
        # An absolute path is never taken for a preset name, whatever the file is called.
        return str(args.vocabulary_file.resolve())
    return args.vocabulary_preset or DEFAULT_VOCABULARY


def build_predictor(args: argparse.Namespace) -> Predictor:
    if args.preset is not None:
        return Predictor.from_preset(
            args.preset, weights=args.weights, device=args.device, opts=args.opts
        )
    opts = [*args.opts, "MODEL.DEVICE", args.device] if args.device else args.opts
    return Predictor.from_config(args.config_file, weights=args.weights, opts=opts)


def collect_images(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image paths from files, folders and glob patterns; and (input, reason) of those not found."""
    paths, missing = [], []
    for entry in inputs:
        path = Path(entry).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
            if len(images) < len(files):
                logger.info("%s: ignoring %d non-image files", path, len(files) - len(images))
            if not images:
                missing.append((entry, "no images in the folder"))
            paths.extend(images)
        elif path.is_file():
            paths.append(path)  # named explicitly: tried whatever its extension
        elif glob.has_magic(entry):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                missing.append((entry, "no image matches the pattern"))
            paths.extend(images)
        else:
            missing.append((entry, "no such file or folder"))
    return list(dict.fromkeys(paths)), missing  # each image once, in order


def unique_stem(path: Path, used: set[str]) -> str:
    """The file stem, with _2, _3, ... appended when another input already had it."""
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def overlay_picture(
    rgb: np.ndarray, prediction: Prediction, *, labels: bool, min_display_size: int
) -> np.ndarray:
    """The (H', W', 3) overlay of `prediction` on the (H, W, 3) `rgb`, enlarged for display
    (see maft_plus.visualization.enlarge_for_display)."""
    big_rgb, big_prediction = enlarge_for_display(rgb, prediction, min_size=min_display_size)
    return overlay(big_rgb, big_prediction, draw_labels=labels)  # (H', W', 3)


def save_outputs(
    rgb: np.ndarray,
    prediction: Prediction,
    output_dir: Path,
    stem: str,
    labels: bool,
    *,
    min_display_size: int = MIN_DISPLAY_SIZE,
) -> None:
    """Write STEM_overlay.png (enlarged for display), STEM_labels.png and, for panoptic,
    STEM_panoptic.png/.json (those at the image's own size: they are data, not pictures)."""
    picture = overlay_picture(
        rgb, prediction, labels=labels, min_display_size=min_display_size
    )  # (H', W', 3)
    strip = legend(prediction, width=picture.shape[1])  # (h, W', 3)
    Image.fromarray(np.concatenate([picture, strip])).save(output_dir / f"{stem}_overlay.png")
    labels_png = label_map_image(prediction.label_map, len(prediction.class_names))
    labels_png.save(output_dir / f"{stem}_labels.png")
    if prediction.task == "panoptic":
        png, annotation = panoptic_files(prediction)
        png.save(output_dir / f"{stem}_panoptic.png")
        annotation = {"file_name": f"{stem}_panoptic.png", "image_id": stem, **annotation}
        (output_dir / f"{stem}_panoptic.json").write_text(json.dumps(annotation, indent=2))


def segment_images(predictor: Predictor, args: argparse.Namespace, vocabulary: str) -> int:
    paths, skipped = collect_images(args.input)
    for entry, reason in skipped:
        print(f"skipped {entry}: {reason}", file=sys.stderr)
    used_stems: set[str] = set()
    done = 0
    for path in tqdm(paths, unit="image", disable=len(paths) < 2):
        try:
            rgb = load_rgb(path)  # (H, W, 3) uint8
        except (ValueError, OSError) as exc:
            tqdm.write(f"skipped: {exc}", file=sys.stderr)  # the message names the file
            skipped.append((str(path), "unreadable image"))
            continue
        prediction = predictor.predict(rgb, vocabulary, task=args.task, min_score=args.min_score)
        stem = unique_stem(path, used_stems)
        save_outputs(
            rgb,
            prediction,
            args.output,
            stem,
            labels=not args.no_labels,
            min_display_size=args.min_display_size,
        )
        done += 1
    summary = f"{done} images segmented, {len(skipped)} skipped"
    if skipped:
        summary += ": " + ", ".join(f"{entry} ({reason})" for entry, reason in skipped)
    print(f"{summary}; outputs in {args.output}")
    return 0 if done else 1


def segment_stream(
    predictor: Predictor,
    capture: cv2.VideoCapture,
    output_path: Path,
    args: argparse.Namespace,
    vocabulary: str,
) -> int:
    """Overlay every frame of `capture` into an mp4v video at `output_path`; Ctrl-C stops."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) or None  # 0 or -1: unknown
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    writer, frames = None, 0
    progress = tqdm(total=total, unit="frame")
    try:
        while args.max_frames is None or frames < args.max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3)
            prediction = predictor.predict(
                rgb, vocabulary, task=args.task, min_score=args.min_score
            )
            picture = overlay_picture(
                rgb, prediction, labels=not args.no_labels, min_display_size=args.min_display_size
            )  # (H', W', 3)
            if writer is None:
                size = (picture.shape[1], picture.shape[0])  # (W, H)
                writer = cv2.VideoWriter(
                    str(output_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size
                )
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write an mp4v video to {output_path}")
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            frames += 1
            progress.update()
    except KeyboardInterrupt:
        tqdm.write("interrupted: closing the video", file=sys.stderr)
    finally:
        progress.close()
        capture.release()
        if writer is not None:
            writer.release()
    if not frames:
        print("0 frames segmented: no frame could be read", file=sys.stderr)
        return 1
    print(f"{frames} frames segmented; video in {output_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    retain_freed_memory()
    # Warnings from every library, information from this script only.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    vocabulary = vocabulary_spec(args)
    try:
        parse_vocabulary(vocabulary)  # fail now, not at the first image
    except (ValueError, FileNotFoundError) as exc:
        print(f"bad vocabulary: {exc}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    predictor = build_predictor(args)
    if args.input is not None:
        return segment_images(predictor, args, vocabulary)
    if args.video is not None:
        capture, output_path = cv2.VideoCapture(str(args.video)), f"{args.video.stem}_overlay.mp4"
        source = str(args.video)
    else:
        capture, output_path = cv2.VideoCapture(args.camera_index), "webcam_overlay.mp4"
        source = f"camera {args.camera_index}"
    if not capture.isOpened():
        print(f"cannot open {source} with OpenCV", file=sys.stderr)
        return 1
    return segment_stream(predictor, capture, args.output / output_path, args, vocabulary)


if __name__ == "__main__":
    sys.exit(main())
