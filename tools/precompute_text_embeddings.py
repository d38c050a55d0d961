"""Precompute the CLIP text embeddings of benchmark vocabularies into the on-disk cache.

    python tools/precompute_text_embeddings.py                       # Large model, all vocabularies
    python tools/precompute_text_embeddings.py --preset-model base-semantic --vocabularies ade150
    python tools/precompute_text_embeddings.py --config-file CFG --device cuda MODEL.WEIGHTS w.pth

The model is built (and its weights loaded) exactly as ``maft_plus.predictor.Predictor`` does, so
the cache key matches later inference with the same config and weights. The cache lives in
``$MAFT_PLUS_CACHE/text_embeddings`` (default ``~/.cache/maft_plus``). Vocabularies whose files
are not prepared (ADE-847, PC-459, LVIS need ``datasets/prepare_*.py``) are skipped with a note.
"""

import argparse
import logging
import time

import torch

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.presets import PRESETS, parse_vocabulary
from maft_plus.modeling.text_embedding_cache import default_cache_root, disk_cache_enabled
from maft_plus.predictor import PRESET_MODELS, REPO_ROOT, Predictor

logger = logging.getLogger("maft_plus")

# One name per vocabulary the package ships or prepares (PRESETS also lists aliases).
DEFAULT_VOCABULARIES = (
    "ade847",
    "ade150",
    "pc459",
    "pc59",
    "voc20",
    "voc21",
    "coco",
    "coco-stuff",
    "lvis",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config-file", help="a MAFT+ config (default: --preset-model's)")
    source.add_argument(
        "--preset-model",
        default="large-semantic",
        choices=sorted(PRESET_MODELS),
        help="a preset model config (default: large-semantic)",
    )
    parser.add_argument(
        "--vocabularies",
        nargs="+",
        default=list(DEFAULT_VOCABULARIES),
        help=f"presets ({', '.join(PRESETS)}) or vocabulary files (default: all shipped)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not disk_cache_enabled():
        raise SystemExit("MAFT_PLUS_TEXT_CACHE disables the disk cache: nothing would be kept")
    config = args.config_file or REPO_ROOT / PRESET_MODELS[args.preset_model]
    predictor = Predictor.from_config(config, opts=[*args.opts, "MODEL.DEVICE", args.device])
    embedder = predictor.model.text_embedder
    print(f"cache: {default_cache_root()}")
    print(f"{'vocabulary':<14}{'classes':>8}{'synonyms':>10}{'seconds':>10}")
    total = 0.0
    for spec in args.vocabularies:
        try:
            names, _ = parse_vocabulary(spec)
        except FileNotFoundError as exc:
            print(f"{spec:<14} skipped: {exc}")
            continue
        vocabulary = Vocabulary.from_names(names)
        start = time.perf_counter()
        with torch.no_grad():
            embedder(vocabulary)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{spec:<14}{vocabulary.num_classes:>8}{vocabulary.num_synonyms:>10}{seconds:>10.2f}")
    print(f"total {total:.2f} s")


if __name__ == "__main__":
    main()
