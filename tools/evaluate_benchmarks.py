"""Evaluate a MAFT+ checkpoint on the open-vocabulary benchmarks; print the table beside the paper.

    python tools/evaluate_benchmarks.py --config-file configs/semantic/maftp_l_eval.yaml
    python tools/evaluate_benchmarks.py --config-file configs/panoptic/maftp_l_pano_eval.yaml
    python tools/evaluate_benchmarks.py --config-file CFG --datasets maftp_ade150_val \
        --output-dir output/bench MODEL.WEIGHTS path/to/model.pth
    python tools/evaluate_benchmarks.py --config-file CFG --plots --grid-images 8 ...

Semantic configs default to A-847, A-150, PC-459, PC-59 and PAS-20; panoptic ones to ADE20K
panoptic. Each benchmark is evaluated with its own vocabulary: by default the reference
(prompt-engineered) class lists the released checkpoints were scored with; ``--class-names plain``
uses the datasets' own names, ``--vocabulary-file DATASET=FILE`` a list of yours (checked against
the dataset's ids and names). The table names the vocabulary of every benchmark. A benchmark
whose files are missing is skipped with a message naming them; results are saved after every
benchmark (results.json, results.md, results.csv in --output-dir), so an interruption loses
nothing done.
Images or labels that cannot be used (unreadable, wrong size, class ids outside the vocabulary) are
skipped, printed and listed in skipped_files.json; a benchmark none of whose images could be
evaluated makes the exit status non-zero.
Progress is saved as it goes (in --output-dir/resume/, every --save-every images per process):
after a kill, the same command with --resume reads the finished benchmarks back and continues the
one in progress from its last saved state, with the same final numbers as an uninterrupted run. A
saved state of another checkpoint, config or vocabulary is refused, never mixed in.
With --plots, each benchmark with semantic results also gets, in --output-dir/DATASET/,
per_class_iou.png (IoU bars), confusion.png (the most-confused classes) and prediction_grid.png
(the first --grid-images images beside their prediction and ground truth), next to the
evaluators' own files (sem_seg_confusion.npy, sem_seg_evaluation.pth, predictions json).
"""

import argparse
import json
import logging
from pathlib import Path

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from maft_plus.allocator import retain_freed_memory
from maft_plus.checkpoint import evaluation_model
from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_builtin_datasets
from maft_plus.data.datasets.register_folder import register_folder_datasets
from maft_plus.data.datasets.requirements import missing_files_message
from maft_plus.data.vocabulary.datasets import vocabulary_label
from maft_plus.evaluation import NothingEvaluatedError
from maft_plus.evaluation.dataset_plots import write_dataset_plots
from maft_plus.evaluation.loop import RESUME_FOLDER, SKIPPED_REPORT, evaluate_datasets
from maft_plus.evaluation.paper import PANOPTIC_BENCHMARKS, PAPER_RESULTS, SEMANTIC_BENCHMARKS
from maft_plus.evaluation.report import results_table, to_csv, to_markdown
from maft_plus.files import write_atomically

logger = logging.getLogger("maft_plus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--datasets", nargs="+", help="dataset names (default: by config type)")
    parser.add_argument(
        "--paper",
        choices=sorted(PAPER_RESULTS),
        help="published numbers to compare with (default: guessed from the config file name)",
    )
    parser.add_argument(
        "--vocabulary-file",
        action="append",
        default=[],
        metavar="DATASET=FILE",
        help="replace a dataset's class names by an id:name,synonym,... file (repeatable); its "
        "ids must be the dataset's and each class must share a name with the dataset's",
    )
    parser.add_argument(
        "--rename-classes",
        action="store_true",
        help="let --vocabulary-file give classes names that share nothing with the dataset's",
    )
    parser.add_argument(
        "--class-names",
        choices=("reference", "plain"),
        help="sets MODEL.MAFT_PLUS.CLASS_NAMES: the prompt-engineered reference lists (default) "
        "or the datasets' plain names",
    )
    parser.add_argument("--output-dir", default="output/benchmarks")
    parser.add_argument(
        "--plots",
        action="store_true",
        help="per benchmark, write per_class_iou.png, confusion.png and prediction_grid.png to "
        "OUTPUT_DIR/DATASET/",
    )
    parser.add_argument(
        "--grid-images",
        type=int,
        default=8,
        metavar="N",
        help="with --plots: images in prediction_grid.png (default 8; 0: no grid)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the same --output-dir: finished benchmarks are read "
        "back, the one in progress continues from its last saved state",
    )
    parser.add_argument(
        "--save-every",
        type=int,
        default=50,
        help="save each process's evaluation state every N images (default 50)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.grid_images < 0:
        parser.error(f"--grid-images must be >= 0, got {args.grid_images}")
    return args


def parse_vocabulary_files(args: argparse.Namespace) -> dict[str, str]:
    files = {}
    for item in args.vocabulary_file:
        dataset, sep, path = item.partition("=")
        if not sep or not dataset or not path:
            raise SystemExit(f"--vocabulary-file expects DATASET=FILE, got {item!r}")
        files[dataset] = path
    return files


def guess_paper(config_file: str) -> str | None:
    stem = Path(config_file).stem.removesuffix("_eval")
    return stem if stem in PAPER_RESULTS else None


def save(
    output_dir: Path, results: dict, paper_key: str | None, vocabularies: dict[str, str]
) -> str:
    """Write results.json/.md/.csv atomically; return the markdown table."""
    paper = PAPER_RESULTS.get(paper_key) if paper_key else None
    rows = results_table(results, paper, vocabularies)
    markdown = to_markdown(rows)
    outputs = {
        "results.json": json.dumps(results, indent=2, default=float),
        "results.md": markdown,
        "results.csv": to_csv(rows),
    }
    for name, text in outputs.items():
        write_atomically(output_dir / name, lambda f, text=text: Path(f).write_text(text))
    return markdown


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    retain_freed_memory()
    setup_logger(name="maft_plus")
    setup_logger(name="detectron2")
    opts = list(args.opts)
    if args.class_names:
        opts += ["MODEL.MAFT_PLUS.CLASS_NAMES", args.class_names]
    cfg = setup_cfg(args.config_file, opts)
    register_builtin_datasets()
    register_folder_datasets(cfg.DATASETS.FOLDERS)  # your own, named in the config
    default = PANOPTIC_BENCHMARKS if cfg.MODEL.MAFT_PLUS.TEST.PANOPTIC_ON else SEMANTIC_BENCHMARKS
    datasets = []
    for name in args.datasets or default:
        message = missing_files_message(name)
        if name not in DatasetCatalog.list():
            print(f"skipping {name}: no such dataset is registered")
        elif message:
            print(f"skipping {name}: {message}")
        else:
            datasets.append(name)
    paper_key = args.paper or guess_paper(args.config_file)
    output_dir = Path(args.output_dir)

    model = evaluation_model(cfg)
    results: dict = {}
    vocabulary_files = parse_vocabulary_files(args)
    vocabularies = {
        name: vocabulary_label(cfg.MODEL.MAFT_PLUS.CLASS_NAMES, vocabulary_files.get(name))
        for name in datasets
    }

    def keep(name: str, result: dict) -> None:
        results[name] = result
        save(output_dir, results, paper_key, vocabularies)
        if args.plots:
            try:
                written = write_dataset_plots(output_dir / name, name, result)
            except ValueError as exc:  # e.g. nothing labelled to plot: the results stay saved
                print(f"{name}: no plots: {exc}")
                written = []
            if written:
                print(f"{name}: plots {', '.join(str(p) for p in written)}")

    def report(name: str, skipped: list[dict]) -> None:
        if skipped:
            print(f"{name}: {len(skipped)} skipped image(s):")
        for entry in skipped:
            print(f"  {entry['file_name']}: {entry['reason']}")

    failure = None
    try:
        evaluate_datasets(
            cfg,
            model,
            datasets,
            vocabulary_files=vocabulary_files,
            rename_classes=args.rename_classes,
            on_result=keep,
            on_skipped=report,
            skipped_report=output_dir / SKIPPED_REPORT,
            output_dir=output_dir if args.plots else None,
            grid_images=args.grid_images if args.plots else 0,
            resume_dir=output_dir / RESUME_FOLDER,
            resume=args.resume,
            save_every=args.save_every,
        )
    except NothingEvaluatedError as exc:
        failure = exc
    print(save(output_dir, results, paper_key, vocabularies))
    print(f"saved results.json, results.md, results.csv and {SKIPPED_REPORT} to {output_dir}")
    if failure is not None:
        raise SystemExit(str(failure))
    return results


if __name__ == "__main__":
    main()
