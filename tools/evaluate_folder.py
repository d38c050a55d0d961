"""Evaluate a MAFT+ checkpoint on your own folder of images and labels, in one command.

    python tools/evaluate_folder.py --config-file configs/semantic/maftp_l_eval.yaml \
        --images my_data/images --labels my_data/labels --classes my_data/classes.txt \
        MODEL.WEIGHTS weights/maftp_l.pth
    python tools/evaluate_folder.py --config-file CFG --images DIR --classes FILE \
        --panoptic-json DIR/panoptic.json --panoptic-pngs DIR/panoptic \
        MODEL.MAFT_PLUS.TEST.PANOPTIC_ON True ...          # PQ (add --labels DIR for mIoU too)

Labels are class-index pngs named like the images (``a.jpg`` -> ``a.png``): value k is the k-th
class of ``--classes`` (an ``id:name,synonym,...`` list; count from 0), ``--ignore-label`` marks
unlabeled pixels. Every file is checked first (``--no-check`` skips it); the problems found are
listed together, each with its file, and nothing is evaluated until they are fixed.

Written to ``--output-dir``: ``results.json`` (every metric), ``per_class_iou.csv`` (IoU, accuracy
and ground-truth pixels per class), ``confusion_matrix.csv`` (rows: prediction, columns: ground
truth, the last row and column "ignore") and, with ``--plots``, ``per_class_iou.png``,
``confusion.png`` and ``prediction_grid.png`` in ``--output-dir/NAME/`` (``--name``, default
``folder``), beside the evaluator's own files. The dataset is evaluated exactly as a registered one
(``DATASETS.FOLDERS`` registers the same folder for training; see the README).
"""

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
from detectron2.utils.logger import setup_logger

from maft_plus.allocator import retain_freed_memory
from maft_plus.checkpoint import evaluation_model
from maft_plus.config import setup_cfg
from maft_plus.data.datasets.check_folder import FolderDatasetError, check_folder_dataset
from maft_plus.data.datasets.register_folder import FolderDataset, register_folder_dataset
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_class_list
from maft_plus.evaluation import NothingEvaluatedError
from maft_plus.evaluation.dataset_plots import write_dataset_plots
from maft_plus.evaluation.loop import SKIPPED_REPORT, evaluate_datasets
from maft_plus.evaluation.sem_seg_evaluation import OpenVocabSemSegEvaluator, segmentation_metrics
from maft_plus.files import write_atomically


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a MAFT+ config (model and weights)")
    parser.add_argument("--images", required=True, help="the folder of images")
    parser.add_argument("--classes", required=True, help="the class list (id:name,synonym,...)")
    parser.add_argument("--labels", help="the folder of class-index png labels")
    parser.add_argument("--ignore-label", type=int, default=255, help="unlabeled (default 255)")
    parser.add_argument("--panoptic-json", help="COCO panoptic json (with --panoptic-pngs)")
    parser.add_argument("--panoptic-pngs", help="the folder of COCO panoptic pngs")
    parser.add_argument("--name", default="folder", help="the dataset's name in the results")
    parser.add_argument("--output-dir", default="output/folder_eval")
    parser.add_argument("--plots", action="store_true", help="also write the three pictures")
    parser.add_argument(
        "--grid-images", type=int, default=8, help="images in prediction_grid.png (--plots)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the full file check")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.labels is None and args.panoptic_json is None:
        parser.error("give --labels DIR, or --panoptic-json FILE and --panoptic-pngs DIR")
    if (args.panoptic_json is None) != (args.panoptic_pngs is None):
        parser.error("--panoptic-json and --panoptic-pngs go together")
    return args


def folder_dataset(args: argparse.Namespace) -> FolderDataset:
    optional = {"labels": args.labels, "panoptic_json": args.panoptic_json}
    optional["panoptic_pngs"] = args.panoptic_pngs
    return FolderDataset(
        name=args.name,
        images=Path(args.images),
        classes=Path(args.classes),
        ignore_label=args.ignore_label,
        **{key: Path(value) for key, value in optional.items() if value is not None},
    )


def per_class_table(conf_matrix: np.ndarray, class_names: list[str]) -> str:
    """CSV: class, IoU, accuracy (percent; empty when absent from the ground truth), gt pixels."""
    metrics = segmentation_metrics(conf_matrix)
    gt_pixels = conf_matrix[:-1, :-1].sum(axis=0)  # (K,)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class", "IoU", "accuracy", "ground_truth_pixels"])
    for name, iou, acc, pixels in zip(
        class_names, metrics["IoU"], metrics["ACC"], gt_pixels, strict=True
    ):
        writer.writerow(
            [name, "" if np.isnan(iou) else f"{iou:.2f}", "" if np.isnan(acc) else f"{acc:.2f}"]
            + [int(pixels)]
        )
    return out.getvalue()


def confusion_table(conf_matrix: np.ndarray, class_names: list[str]) -> str:
    """CSV of the (K+1, K+1) matrix: a header of ground-truth classes, one row per prediction."""
    names = [*class_names, "ignore"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["prediction \\ ground truth", *names])
    for name, row in zip(names, conf_matrix.tolist(), strict=True):
        writer.writerow([name, *row])
    return out.getvalue()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    retain_freed_memory()
    setup_logger(name="maft_plus")
    dataset = folder_dataset(args)
    try:
        if not args.no_check:
            print(f"checked {check_folder_dataset(dataset)} images of {args.images}")
        cfg = setup_cfg(args.config_file, args.opts)
        register_folder_dataset(dataset)
    except (FolderDatasetError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    output_dir = Path(args.output_dir)
    model = evaluation_model(cfg)
    try:
        results = evaluate_datasets(
            cfg,
            model,
            [dataset.name],
            skipped_report=output_dir / SKIPPED_REPORT,
            output_dir=output_dir,
            grid_images=args.grid_images if args.plots else 0,
        )
    except NothingEvaluatedError as exc:
        raise SystemExit(str(exc)) from None
    result = results[dataset.name]
    write_text(output_dir / "results.json", json.dumps(result, indent=2, default=float))
    written = ["results.json"]
    evaluator_dir = output_dir / dataset.name
    confusion_file = evaluator_dir / OpenVocabSemSegEvaluator.CONFUSION_FILE
    if confusion_file.is_file():
        class_names = short_names(dataset.classes)
        conf_matrix = np.load(confusion_file)
        write_text(output_dir / "per_class_iou.csv", per_class_table(conf_matrix, class_names))
        write_text(output_dir / "confusion_matrix.csv", confusion_table(conf_matrix, class_names))
        written += ["per_class_iou.csv", "confusion_matrix.csv"]
        if args.plots:
            plots = write_dataset_plots(evaluator_dir, dataset.name, result)
            written += [str(path.relative_to(output_dir)) for path in plots]
    summary(result)
    print(f"wrote {', '.join(written)} to {output_dir}")
    return result


def short_names(classes_file: Path) -> list[str]:
    """Each class's first name, as the tables and plots show it."""
    vocabulary = Vocabulary.from_names(list(read_class_list(classes_file).names))
    return [synonyms[0] for synonyms in vocabulary.class_synonyms]


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def summary(result: dict) -> None:
    semantic = result.get("sem_seg")
    if semantic:
        print(
            f"mIoU {semantic['mIoU']:.2f}  mIoU_legacy {semantic['mIoU_legacy']:.2f}  "
            f"fwIoU {semantic['fwIoU']:.2f}  mACC {semantic['mACC']:.2f}  "
            f"pACC {semantic['pACC']:.2f}"
        )
    panoptic = result.get("panoptic_seg")
    if panoptic:
        print(f"PQ {panoptic['PQ']:.2f}  SQ {panoptic['SQ']:.2f}  RQ {panoptic['RQ']:.2f}")


if __name__ == "__main__":
    main()
