"""A web page (Gradio) to segment an uploaded image into classes the user types or picks.

    python demo/web_demo.py --preset tiny --device cpu
    python demo/web_demo.py --config-file CFG --weights W --host 0.0.0.0 --port 8080

The page takes an image, class names as free text ("cat, kitty; dog; sky": ";" between classes,
"," between synonyms) or a vocabulary preset, and a task. It shows the image with its labelled
segments and a legend table. The model work is ``Predictor.predict``, the pictures come from
``maft_plus.visualization``; this file only wires them to the page.
"""

import argparse
import html
import logging
import re
import sys
from pathlib import Path

import gradio as gr
import numpy as np

from maft_plus.data.vocabulary.presets import PRESETS, parse_vocabulary
from maft_plus.predictor import PRESET_MODELS, TASKS, Prediction, Predictor
from maft_plus.visualization import overlay, segment_colors

NO_PRESET = ""  # the preset dropdown's value for "use the typed classes"
# ASCII punctuation, written as "\<char>" in markdown so that class names show as typed.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def segment_image(
    predictor: Predictor,
    image: np.ndarray | None,
    classes: str,
    preset: str | None,
    task: str,
    min_score: float = 0.0,
) -> tuple[np.ndarray, str]:
    """What the Segment button runs: the overlay and the legend of one image.

    Args:
        image: (H, W, 3) uint8 RGB, None when nothing is uploaded.
        classes: free text, ";" or newlines between classes, "," between synonyms. Never read as a
            preset or a file name (the page must not read files of the server).
        preset: a ``PRESETS`` name, used instead of ``classes``; ``NO_PRESET`` or None: none.
        task: "semantic", "panoptic" or "instance".
        min_score: instance task: the lowest instance score shown.

    Returns:
        (H, W, 3) uint8 overlay with labels, and the legend as markdown.

    Raises:
        gr.Error: with a message for the user on bad input (no image, no classes, an unknown
            task or preset, a preset whose vocabulary file is not prepared).
    """
    if image is None:
        raise _user_error("No image: upload an image first.")
    if task not in TASKS:
        raise _user_error(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
    if preset:
        if preset not in PRESETS:
            raise _user_error(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
        if classes.strip():
            gr.Warning(f"Using the preset {preset!r}; the typed classes are ignored.")
        vocabulary: str | list[str] = preset
    else:
        vocabulary = [item for item in re.split(r"[;\n]", classes) if item.strip()]
        if not vocabulary:
            raise _user_error('No classes: type class names such as "cat, kitty; dog; sky".')
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
    default_vocabulary: str = "cat; dog; sky",
    default_min_score: float = 0.5,
) -> gr.Blocks:
    """The page: image, classes, preset, task and minimum score in; overlay and legend out."""

    def segment(image, classes, preset, task, min_score):
        return segment_image(predictor, image, classes, preset, task, min_score)

    preset_choices = [("none: use the classes above", NO_PRESET), *((p, p) for p in PRESETS)]
    with gr.Blocks(title="MAFT+ open-vocabulary segmentation") as app:
        gr.Markdown("## MAFT+ open-vocabulary segmentation")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    label="Image", type="numpy", sources=["upload", "clipboard"], elem_id="image"
                )
                classes = gr.Textbox(
                    value=default_vocabulary,
                    label="Classes",
                    info='";" between classes, "," between synonyms: "cat, kitty; dog; sky"',
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
        )
    return app


def _user_error(message: str) -> gr.Error:
    # gr.Error renders its message as HTML: escape what the user typed. No traceback: not a bug.
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _markdown_text(text: str) -> str:
    """``text`` shown as typed in markdown: its punctuation (HTML's < > & too) backslash-escaped."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", choices=sorted(PRESET_MODELS), help="a preset model")
    model.add_argument("--config-file", type=Path, help="a MAFT+ config file")
    parser.add_argument("--weights", help="checkpoint: path, http(s) URL or hf:// id")
    parser.add_argument("--device", help='"cpu", "cuda", ... (default: cuda when available)')
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    args = parser.parse_args(argv)
    if args.config_file is not None and not args.config_file.is_file():
        parser.error(f"--config-file: no such file: {args.config_file}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.preset is not None:
        predictor = Predictor.from_preset(args.preset, weights=args.weights, device=args.device)
    else:
        opts = ["MODEL.DEVICE", args.device] if args.device else []
        predictor = Predictor.from_config(args.config_file, weights=args.weights, opts=opts)
    build_app(predictor).launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
