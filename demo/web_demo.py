"""A web page (Gradio) to segment an uploaded image into classes the user types or picks.

    python demo/web_demo.py --preset tiny --device cpu
    python demo/web_demo.py --config-file CFG --weights W --host 0.0.0.0 --port 8080

The page takes an image, class names as free text ("cat, kitty; dog; sky": ";" between classes,
"," between synonyms) or a vocabulary preset, and a task. It shows the image with its labelled
segments and a legend table. The model work is ``Predictor.predict``, the pictures come from
``maft_plus.visualization``; this file wires them to the page, one model call at a time behind a
bounded queue, within ``Limits`` (a message for the client beyond them), in bounded memory.
"""

import argparse
import dataclasses
import html
import logging
import re
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.data_classes import ImageData
from gradio_client.utils import is_http_url_like
from PIL import Image, UnidentifiedImageError

from maft_plus.allocator import retain_freed_memory
from maft_plus.data.vocabulary.presets import PRESETS, parse_vocabulary
from maft_plus.predictor import PRESET_MODELS, TASKS, Prediction, Predictor, load_rgb
from maft_plus.visualization import overlay, segment_colors

NO_PRESET = ""  # the preset dropdown's value for "use the typed classes"
# ASCII punctuation, written as "\<char>" in markdown so that class names show as typed.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")

# Limits: the defaults of the command-line options of the same names.
MAX_QUEUE = 16  # requests waiting for the model; more are told "Queue is full" (HTTP 503)
MAX_FILE_MB = 20.0  # an upload, in MiB; Gradio stops reading it beyond that (HTTP 413)
MAX_PIXELS = 25_000_000  # width x height of an image, read from its header before decoding
MAX_CLASSES = 200  # typed classes (presets are the server's own lists and are not limited)
MAX_CLASS_NAME_LENGTH = 100  # characters in one typed class, its synonyms included
# What the server keeps between requests.
MAX_CACHED_SYNONYMS = 4096  # text embeddings held in memory; more than a preset has (ADE-847: 1341)
SESSION_CAPACITY = 256  # Gradio sessions whose last inputs stay in memory (Gradio's default: 10000)
DELETE_CACHE = (300, 900)  # every 5 min, Gradio deletes the uploads and results older than 15 min
# The formats an upload is decoded from. PIL opens many more, EPS among them by running Ghostscript.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG includes MPO (phones)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a client may send and how many requests may wait (the constants above)."""

    max_queue: int = MAX_QUEUE
    max_file_mb: float = MAX_FILE_MB
    max_pixels: int = MAX_PIXELS
    max_classes: int = MAX_CLASSES
    max_class_name_length: int = MAX_CLASS_NAME_LENGTH

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


class SharedPredictor:
    """The predictor every request uses: one call at a time, its text-embedding caches bounded.

    The predictor keeps the embedding of every synonym it has seen, in memory and on disk. Here
    typed classes never reach the disk cache (presets, a finite set, may), and the memory cache
    keeps the ``max_cached_synonyms`` most recently used synonyms.
    """

    def __init__(self, predictor: Predictor, *, max_cached_synonyms: int = MAX_CACHED_SYNONYMS):
        self.predictor = predictor
        self._lock = threading.Lock()
        self._embedder = predictor.model.text_embedder
        self._embedder.max_cached_synonyms = max_cached_synonyms
        self._disk_cache = self._embedder.disk_cache  # the predictor's own setting

    def predict(
        self, image: np.ndarray, vocabulary: str | list[str], task: str, *, min_score: float = 0.0
    ) -> Prediction:
        """``Predictor.predict``; ``vocabulary`` a ``PRESETS`` name or typed class strings."""
        is_preset = isinstance(vocabulary, str) and vocabulary in PRESETS
        with self._lock:
            self._embedder.disk_cache = self._disk_cache and is_preset
            return self.predictor.predict(image, vocabulary, task, min_score=min_score)


def image_input(*, max_pixels: int, **kwargs) -> gr.Image:
    """``gr.Image(**kwargs)`` whose value, an (H, W, 3) uint8 RGB array, is decoded here from a
    file Gradio received, never from a path or URL of the client's choosing.

    Gradio streams an upload (capped by ``launch(max_file_size=...)``) into its cache folder, the
    client's file name stripped of separators; an event names it by path. Gradio checks that path
    only when the client marks it as a file, else ``gr.Image`` opens any path. So: the path must be
    in the cache folder; http(s) paths (Gradio would download them) and inline data URLs (past the
    size cap) are refused; the header's pixel count must be within ``max_pixels`` before decoding.
    """
    image = gr.Image(type="numpy", **kwargs)
    cache = Path(image.GRADIO_CACHE).resolve()
    move_to_cache = image.async_move_resource_to_block_cache

    async def move_to_cache_unless_url(url_or_file_path: str | Path | None) -> str | None:
        if is_http_url_like(str(url_or_file_path)):
            raise _user_error("Images are uploaded, not fetched from a URL: upload the file.")
        return await move_to_cache(url_or_file_path)

    def preprocess(payload: ImageData | None) -> np.ndarray | None:
        if payload is None:
            return None
        name = payload.orig_name or "the image"
        if payload.path is None:
            raise _user_error(f"{name!r} came inline, not as an upload: upload the image file.")
        path = Path(payload.path).resolve()
        if not path.is_relative_to(cache) or not path.is_file():
            raise _user_error(f"{payload.path!r} is not a file uploaded to this page.")
        return decode_upload(path, name, max_pixels)

    # Instance attributes, not a gr.Image subclass: Gradio writes a .pyi file next to the source
    # file of every component class it sees defined.
    image.async_move_resource_to_block_cache = move_to_cache_unless_url
    image.preprocess = preprocess
    return image


def decode_upload(path: Path, name: str, max_pixels: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the uploaded file ``path`` (``name`` to the user); a gr.Error if it
    is not one of ``IMAGE_FORMATS``, undecodable, or over ``max_pixels`` (checked before decoding).
    """
    try:
        opened = Image.open(path, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:  # over 2 * PIL.Image.MAX_IMAGE_PIXELS
        message = f"{name!r} has too many pixels ({exc}); the limit is {max_pixels:,}."
        raise _user_error(message) from None
    except (UnidentifiedImageError, OSError):
        formats = ", ".join(IMAGE_FORMATS)
        raise _user_error(f"{name!r} is not an image this page reads ({formats}).") from None
    with opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise _user_error(
                f"{name!r} has {width}×{height} = {width * height:,} pixels; the limit is "
                f"{max_pixels:,}: upload a smaller image."
            )
        try:
            return load_rgb(opened)  # decodes: upright by EXIF, RGB
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's decoding errors
            raise _user_error(f"{name!r} could not be decoded: {exc}") from None


def segment_image(
    predictor: Predictor | SharedPredictor,
    image: np.ndarray | None,
    classes: str | None,
    preset: str | None,
    task: str,
    min_score: float = 0.0,
    *,
    limits: Limits = Limits(),  # noqa: B008 (frozen: an immutable default)
) -> tuple[np.ndarray, str]:
    """What the Segment button runs: the overlay and the legend of one image.

    Args:
        image: (H, W, 3) uint8 RGB, None when nothing is uploaded.
        classes: free text, ";" or newlines between classes, "," between synonyms. Never read as a
            preset or a file name (the page must not read files of the server).
        preset: a ``PRESETS`` name, used instead of ``classes``; ``NO_PRESET`` or None: none.
        task: "semantic", "panoptic" or "instance".
        min_score: instance task: the lowest instance score shown.
        limits: ``max_classes`` and ``max_class_name_length`` apply to the typed classes.

    Returns:
        (H, W, 3) uint8 overlay with labels, and the legend as markdown.

    Raises:
        gr.Error: with a message for the user on bad input (no image, no classes, too many or too
            long classes, an unknown task or preset, a preset whose vocabulary file is missing).
    """
    if image is None:
        raise _user_error("No image: upload an image first.")
    if task not in TASKS:
        raise _user_error(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
    classes = classes or ""
    if preset:
        if preset not in PRESETS:
            raise _user_error(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
        if classes.strip():
            gr.Warning(f"Using the preset {preset!r}; the typed classes are ignored.")
        vocabulary: str | list[str] = preset
    else:
        vocabulary = _typed_classes(classes, limits)
    try:
        parse_vocabulary(vocabulary)  # the user's mistakes, reported before the model runs
    except FileNotFoundError as exc:
        raise _user_error(f"The vocabulary of preset {preset!r} is missing: {exc}") from exc
    except ValueError as exc:
        raise _user_error(f"Bad classes: {exc}") from exc
    prediction = predictor.predict(image, vocabulary, task, min_score=min_score)
    if not prediction.segments:
        hint = " Lower the minimum score." if task == "instance" else ""
        gr.Warning(f"No {task} segment found.{hint}")
    return overlay(image, prediction), legend_markdown(prediction)


def _typed_classes(classes: str, limits: Limits) -> list[str]:
    """The class strings of the typed text, within ``limits``; a gr.Error beyond them."""
    vocabulary = [item for item in re.split(r"[;\n]", classes) if item.strip()]
    if not vocabulary:
        raise _user_error('No classes: type class names such as "cat, kitty; dog; sky".')
    count, most = len(vocabulary), limits.max_classes
    if count > most:
        raise _user_error(f"Too many classes: {count}; the limit is {most}.")
    most = limits.max_class_name_length
    for k, item in enumerate(item.strip() for item in vocabulary):
        if len(item) > most:
            message = f"Class {k + 1} is {len(item)} characters long; the limit is {most}: "
            raise _user_error(message + f"{item[:40]!r}...")
    return vocabulary


def legend_markdown(prediction: Prediction) -> str:
    """A markdown table of the segments, biggest first: colour, class, share of pixels, score;
    then the classes of the vocabulary that have no segment."""
    height, width = prediction.label_map.shape
    segments = prediction.segments
    colors = segment_colors(prediction)
    areas = [int(segment.mask.sum()) for segment in segments]
    plural = "" if len(segments) == 1 else "s"
    lines = [f"**{prediction.task}**: {len(segments)} segment{plural} in {width}×{height} pixels"]
    if segments:
        lines += ["", "| colour | class | pixels | score |", "|:-:|:--|--:|--:|"]
    for i in sorted(range(len(segments)), key=lambda i: (-areas[i], segments[i].id)):
        swatch = '<span style="color:#{:02x}{:02x}{:02x}">&#9608;&#9608;</span>'.format(*colors[i])
        share = 100.0 * areas[i] / (height * width)
        name = _markdown_text(segments[i].name)
        lines.append(f"| {swatch} | {name} | {share:.1f}% | {segments[i].score:.2f} |")
    found = {segment.label for segment in segments}
    missing = [name for k, name in enumerate(prediction.class_names) if k not in found]
    if missing:
        lines += ["", "Not found: " + ", ".join(_markdown_text(name) for name in missing)]
    return "\n".join(lines)


def build_app(
    predictor: Predictor,
    *,
    limits: Limits = Limits(),  # noqa: B008 (frozen: an immutable default)
    default_vocabulary: str = "cat; dog; sky",
    default_min_score: float = 0.5,
) -> gr.Blocks:
    """The page: image, classes, preset, task and minimum score in; overlay and legend out.
    Its queue holds ``limits.max_queue`` requests; serve it with ``serve`` (the upload limit)."""
    shared = SharedPredictor(predictor)

    def segment(image, classes, preset, task, min_score):
        return segment_image(shared, image, classes, preset, task, min_score, limits=limits)

    preset_choices = [("none: use the classes above", NO_PRESET), *((p, p) for p in PRESETS)]
    with gr.Blocks(title="MAFT+ open-vocabulary segmentation", delete_cache=DELETE_CACHE) as app:
        gr.Markdown("## MAFT+ open-vocabulary segmentation")
        with gr.Row():
            with gr.Column():
                image = image_input(
                    max_pixels=limits.max_pixels,
                    label=f"Image (up to {limits.max_file_mb:g} MiB, {limits.max_pixels:,} pixels)",
                    sources=["upload", "clipboard"],
                    elem_id="image",
                )
                classes = gr.Textbox(
                    value=default_vocabulary,
                    label=f"Classes (up to {limits.max_classes})",
                    info='";" between classes, "," between synonyms: "cat, kitty; dog; sky" '
                    f"({limits.max_class_name_length} characters at most)",
                    elem_id="classes",
                )
                preset = gr.Dropdown(
                    preset_choices, value=NO_PRESET, label="Vocabulary preset", elem_id="preset"
                )
                task = gr.Radio(list(TASKS), value="semantic", label="Task", elem_id="task")
                min_score = gr.Slider(
                    0.0, 1.0, value=default_min_score, step=0.05, label="Minimum instance score"
                )
                button = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column():
                result = gr.Image(  # png: lossless; no "share" button (it uploads elsewhere)
                    label="Segments",
                    format="png",
                    interactive=False,
                    buttons=["download", "fullscreen"],
                    elem_id="overlay",
                )
                legend = gr.Markdown(latex_delimiters=[], elem_id="legend")
        button.click(
            segment,
            inputs=[image, classes, preset, task, min_score],
            outputs=[result, legend],
            api_name="segment",
            concurrency_limit=1,  # one predictor: one call at a time (its lock says so too)
        )
    app.queue(max_size=limits.max_queue)
    return app


def serve(
    app: gr.Blocks,
    *,
    limits: Limits,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    block: bool = True,
) -> None:
    """Serve ``app`` on ``host:port``, uploads capped at ``limits.max_file_bytes``;
    ``block=False``: return once it serves (``app.close()`` stops it)."""
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=limits.max_file_bytes,
        state_session_capacity=SESSION_CAPACITY,
        prevent_thread_lock=not block,
        quiet=not block,
    )


def _user_error(message: str) -> gr.Error:
    # gr.Error renders its message as HTML: escape what the user typed. No traceback: not a bug.
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _markdown_text(text: str) -> str:
    """``text`` shown as typed in markdown: its punctuation (HTML's < > & too) backslash-escaped."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``args.limits`` gathers the ``--max-*`` ones."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", choices=sorted(PRESET_MODELS), help="a preset model")
    model.add_argument("--config-file", type=Path, help="a MAFT+ config file")
    parser.add_argument("--weights", help="checkpoint: path, http(s) URL or hf:// id")
    parser.add_argument("--device", help='"cpu", "cuda", ... (default: cuda when available)')
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    limits = parser.add_argument_group("limits (beyond them the client gets a message)")
    for option, kind, default, meaning in (
        ("--max-queue", int, MAX_QUEUE, "requests waiting for the model"),
        ("--max-file-mb", float, MAX_FILE_MB, "size of an upload, in MiB"),
        ("--max-pixels", int, MAX_PIXELS, "width x height of an image, checked before decoding"),
        ("--max-classes", int, MAX_CLASSES, "typed classes"),
        ("--max-class-name-length", int, MAX_CLASS_NAME_LENGTH, "characters in a typed class"),
    ):
        limits.add_argument(option, type=kind, default=default, help=f"{meaning} ({default:,})")
    args = parser.parse_args(argv)
    if args.config_file is not None and not args.config_file.is_file():
        parser.error(f"--config-file: no such file: {args.config_file}")
    try:
        args.limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    except ValueError as exc:
        parser.error(f"--{str(exc).replace('_', '-')}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    retain_freed_memory()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # PIL refuses images over 2x this many pixels as decompression bombs: not below the limit.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.limits.max_pixels)
    if args.preset is not None:
        predictor = Predictor.from_preset(args.preset, weights=args.weights, device=args.device)
    else:
        opts = ["MODEL.DEVICE", args.device] if args.device else []
        predictor = Predictor.from_config(args.config_file, weights=args.weights, opts=opts)
    app = build_app(predictor, limits=args.limits)
    serve(app, limits=args.limits, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
