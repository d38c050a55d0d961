"""Check the bfloat16 fast path against float32 on a dataset before turning it on.

    python tools/bf16_agreement.py --config-file configs/semantic/maftp_l_eval.yaml \
        --dataset ade20k_sem_seg_val --max-images 50 MODEL.WEIGHTS weights/maftp_l.pth

The model is built twice from the same config, with the same weights (random ones too): in
float32 (``TEST.AUTOCAST ""``) and on the fast path (``TEST.AUTOCAST bfloat16``,
``TEST.PIXEL_DECODER_AUTOCAST True``). Both segment the same images; printed, and written as JSON
to ``--output``: the share of pixels where the two give the same label, and each one's mIoU (the
evaluation's own metric) with their difference. The fast path's targets (README, "Performance"):
at least 99.5% of the pixels the same, mIoU within 0.3. The check is about accuracy; its speed on
this machine says nothing about the fast path's.
"""

import argparse
import json
import logging
from pathlib import Path

import torch
from detectron2.data import get_detection_dataset_dicts
from detectron2.utils.logger import setup_logger

from maft_plus.checkpoint import evaluation_model
from maft_plus.config import setup_cfg
from maft_plus.data.dataset_mappers import EvaluationMapper
from maft_plus.data.datasets import register_builtin_datasets
from maft_plus.data.skip_records import is_skip_record
from maft_plus.data.vocabulary.datasets import dataset_vocabulary
from maft_plus.evaluation.sem_seg_evaluation import OpenVocabSemSegEvaluator
from maft_plus.files import write_atomically

logger = logging.getLogger("maft_plus.bf16_agreement")

SEMANTIC_LABELS = (
    *("MODEL.MAFT_PLUS.TEST.SEMANTIC_ON", "True", "MODEL.MAFT_PLUS.TEST.PANOPTIC_ON", "False"),
    *("MODEL.MAFT_PLUS.TEST.INSTANCE_ON", "False"),
    *("MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "labels"),
)
PRECISIONS = {
    "fp32": (
        "MODEL.MAFT_PLUS.TEST.AUTOCAST",
        "",
        "MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST",
        "False",
    ),
    "bf16": (
        *("MODEL.MAFT_PLUS.TEST.AUTOCAST", "bfloat16"),
        *("MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST", "True"),
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a MAFT+ config (model and weights)")
    parser.add_argument(
        "--dataset", help="a registered semantic dataset (default: DATASETS.TEST[0])"
    )
    parser.add_argument("--max-images", type=int, default=0, help="the first N images (0: all)")
    parser.add_argument("--output", default="output/bf16_agreement.json", help="the JSON report")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.max_images < 0:
        parser.error(f"--max-images must be >= 0 (0: all), got {args.max_images}")
    return args


def compare_precisions(
    config_file: str, opts: list[str], dataset: str | None = None, max_images: int = 0
) -> dict:
    """Segment a dataset's images in float32 and on the bf16 fast path; compare the labels.

    Returns:
        ``dataset``, ``images`` (evaluated), ``pixels``, ``same_label`` (fraction of pixels with
        the same label), ``mIoU_fp32``, ``mIoU_bf16`` and ``mIoU_difference`` (bf16 - fp32, in
        points).
    """
    configs = {
        name: setup_cfg(config_file, [*opts, *SEMANTIC_LABELS, *extra])
        for name, extra in PRECISIONS.items()
    }
    cfg = configs["fp32"]
    dataset = dataset or cfg.DATASETS.TEST[0]
    vocabulary, _ = dataset_vocabulary(dataset, class_names=cfg.MODEL.MAFT_PLUS.CLASS_NAMES)
    models = {name: evaluation_model(config) for name, config in configs.items()}
    # the very same weights, also when there are none to load (random init differs per build)
    models["bf16"].load_state_dict(models["fp32"].state_dict())
    evaluators = {}
    for name, model in models.items():
        model.set_vocabulary(vocabulary)
        evaluators[name] = OpenVocabSemSegEvaluator(dataset, distributed=False)
        evaluators[name].reset()
    records = get_detection_dataset_dicts([dataset], filter_empty=False)
    mapper = EvaluationMapper(cfg)
    same = pixels = images = 0
    for record in records[:max_images] if max_images else records:
        inputs = [mapper(record)]
        if is_skip_record(inputs[0]):
            continue  # the mapper has logged why
        labels = {}
        with torch.inference_mode():
            for name, model in models.items():
                outputs = model(inputs)
                evaluators[name].process(inputs, outputs)
                labels[name] = outputs[0]["sem_seg_labels"]  # (H, W)
        same += int((labels["fp32"] == labels["bf16"]).sum())
        pixels += labels["fp32"].numel()
        images += 1
    if images == 0:
        raise ValueError(f"no image of {dataset!r} could be read: nothing to compare")
    miou = {name: evaluators[name].evaluate()["sem_seg"]["mIoU"] for name in models}
    return {
        "dataset": dataset,
        "images": images,
        "pixels": pixels,
        "same_label": same / pixels,
        "mIoU_fp32": miou["fp32"],
        "mIoU_bf16": miou["bf16"],
        "mIoU_difference": miou["bf16"] - miou["fp32"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logger(name="maft_plus")
    register_builtin_datasets()
    report = compare_precisions(args.config_file, args.opts, args.dataset, args.max_images)
    text = json.dumps(report, indent=2)
    write_atomically(Path(args.output), lambda name: Path(name).write_text(text))
    print(
        f"{report['dataset']}: {report['images']} images, {100 * report['same_label']:.3f}% of "
        f"{report['pixels']} pixels with the same label; mIoU {report['mIoU_fp32']:.2f} (fp32), "
        f"{report['mIoU_bf16']:.2f} (bf16), difference {report['mIoU_difference']:+.2f}"
    )
    return report


if __name__ == "__main__":
    main()
