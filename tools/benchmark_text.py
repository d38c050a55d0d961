"""Time CLIP text encoding of the ADE-150 and ADE-847 prompts: full context length vs truncated.

    python tools/benchmark_text.py                                   # Large text tower, CPU
    python tools/benchmark_text.py --num-prompts 1000 --repeats 3 --output text_bench.json
    python tools/benchmark_text.py --model convnext_base_w_320 --device cuda

The CLIP model is built with random weights (no download): speed does not depend on the values,
and the exactness check (max |full - truncated|) holds for any weights. Prompts are every synonym
through the 14 templates. ADE-847's names come from its prepared vocabulary file; without it,
1,342 synonyms of realistic lengths are synthesized from ADE-150's names (the output says so).
Both paths run ``CLIPConvNeXt.encode_text`` in batches of --batch-size sentences.
"""

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.presets import parse_vocabulary
from maft_plus.modeling.backbone.clip_convnext import CLIPConvNeXt
from maft_plus.modeling.text_classifier import TEMPLATES

ADE847_NUM_SYNONYMS = 1342  # synonyms in the prepared ADE-847 vocabulary
# Qualifiers that turn ADE-150 names into plausible extra ADE-847-like synonyms.
QUALIFIERS = ("small", "wooden", "old", "metal", "outdoor", "glass", "folding", "electric")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnext_large_d_320", help="open_clip model name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences per forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (median)")
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=0,
        help="N prompts per vocabulary, evenly spread (0: all)",
    )
    parser.add_argument("--output", default="", help="write the results as JSON here")
    return parser.parse_args(argv)


def ade847_synonyms() -> tuple[list[str], str]:
    """ADE-847's synonyms (from the prepared file, else synthesized) and where they came from."""
    try:
        names, _ = parse_vocabulary("ade847")
        return list(Vocabulary.from_names(names).synonyms), "prepared vocabulary file"
    except FileNotFoundError:
        pass
    base = list(Vocabulary.from_names(parse_vocabulary("ade150")[0]).synonyms)
    synonyms = list(base)
    for i in range(ADE847_NUM_SYNONYMS - len(base)):
        qualifier = QUALIFIERS[(i // len(base)) % len(QUALIFIERS)]
        synonyms.append(f"{qualifier} {base[i % len(base)]}")
    return synonyms, f"synthesized {ADE847_NUM_SYNONYMS} synonyms from ADE-150 names (no file)"


def prompts_of(synonyms: list[str], limit: int) -> list[str]:
    """Every synonym through every template; ``limit`` > 0 keeps that many, evenly spread."""
    prompts = [t.replace("{}", name) for name in synonyms for t in TEMPLATES]
    if limit <= 0 or limit >= len(prompts):
        return prompts
    return [prompts[i * len(prompts) // limit] for i in range(limit)]


def time_path(
    backbone: CLIPConvNeXt, prompts: list[str], *, truncate: bool, batch_size: int, repeats: int
) -> tuple[list[float], torch.Tensor]:
    """Seconds of each run and the (N, D) embeddings of the last one."""
    runs = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        embeds = backbone.encode_text(prompts, truncate=truncate, batch_size=batch_size)
        if embeds.is_cuda:
            torch.cuda.synchronize()
        runs.append(time.perf_counter() - start)
    return runs, embeds.float().cpu()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.repeats < 1 or args.batch_size < 1:
        raise SystemExit("--repeats and --batch-size must be positive")
    backbone = CLIPConvNeXt(model_name=args.model, pretrained="").to(args.device).eval()
    ade847, ade847_source = ade847_synonyms()
    vocabularies = {
        "ade150": (list(Vocabulary.from_names(parse_vocabulary("ade150")[0]).synonyms), "shipped"),
        "ade847": (ade847, ade847_source),
    }
    results = {
        "model": args.model,
        "weights": "random (pretrained=None)",
        "device": str(args.device),
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "vocabularies": {},
    }
    header = f"{'vocabulary':<10}{'prompts':>9}{'full s':>10}{'trunc s':>10}{'speedup':>9}"
    print(
        f"{args.model} on {args.device}, {torch.get_num_threads()} threads, median of "
        f"{args.repeats}"
    )
    print(header + f"{'max |diff|':>12}")
    for name, (synonyms, source) in vocabularies.items():
        prompts = prompts_of(synonyms, args.num_prompts)
        with torch.no_grad():
            full_runs, full = time_path(
                backbone, prompts, truncate=False, batch_size=args.batch_size, repeats=args.repeats
            )
            trunc_runs, truncated = time_path(
                backbone, prompts, truncate=True, batch_size=args.batch_size, repeats=args.repeats
            )
        full_s, trunc_s = statistics.median(full_runs), statistics.median(trunc_runs)
        diff = (full - truncated).abs().max().item()
        results["vocabularies"][name] = {
            "source": source,
            "num_synonyms": len(synonyms),
            "num_prompts": len(prompts),
            "full_s": full_s,
            "truncated_s": trunc_s,
            "speedup": full_s / trunc_s,
            "max_abs_diff": diff,
            "full_runs_s": full_runs,
            "truncated_runs_s": trunc_runs,
        }
        print(
            f"{name:<10}{len(prompts):>9}{full_s:>10.2f}{trunc_s:>10.2f}{full_s / trunc_s:>8.1f}x"
            f"{diff:>12.2e}"
        )
    print(f"ade847 names: {ade847_source}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
