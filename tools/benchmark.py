"""Benchmark MAFT+ inference, one training step and the mask-aware loss: time and peak memory.

    python tools/benchmark.py --size 640 --vocabulary ade150 ade847 --warmup 1 --repeats 3
    python tools/benchmark.py --config-file CFG --device cuda --amp bf16 --output bench.json \
        MODEL.MAFT_PLUS.CLIP_PRETRAINED laion2b_s29b_b131k_ft_soup

Defaults: configs/semantic/maftp_l_eval.yaml with random CLIP weights (nothing downloads). Every
measurement runs in a fresh subprocess so that peak memories do not mix. CUDA peaks are the rise of
torch.cuda.max_memory_allocated. CPU peaks are the rise of the resident set's high-water mark over
the resident set before the measured runs (the mark is reset through /proc/self/clear_refs), taken
in a second subprocess whose glibc returns every freed block of 64 KiB or more to the system
(MALLOC_MMAP_THRESHOLD_), so that the mark follows live tensors rather than the allocator's
leftovers; times come from the first subprocess, which keeps freed memory for reuse as training
and evaluation do (maft_plus/allocator.py; MAFT_PLUS_RETAIN_FREED_MEMORY=0 times glibc's
defaults). Times are medians
over rounds; a round runs the trunk then the whole inference, and the ratio is the median of the
rounds' own ratios (steady under drifts of a shared machine's speed). After the timed rounds,
as many more calls are timed stage by stage (forward hooks on CLIP-V, the pixel decoder and the
transformer decoder; the rest of predict; post-processing) to show where the time goes, and
the matrix products of one inference and of the trunk are counted (`benchmark_flops`): their
ratio is the floor of the time ratio if every product ran at the trunk's speed.
Text embeddings are prepared before any timing, so the text tower is never timed; with random
weights they are random unit rows (the text tower's output would be as meaningless and slow to
get). Targets (checked here, never by the tests): inference <= 1.3x the CLIP-V trunk; peak
inference memory with ADE-847 within 1.2x of ADE-150 (also reported without the returned semantic
output, which grows with K under MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT scores); the mask-aware
loss's peak not growing with the number of segments by more than one (Q, H, W) float mask buffer.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from benchmark_flops import product_gflop
from benchmark_memory import MIB, PeakMemory
from benchmark_report import check_targets, table
from benchmark_setup import (
    REPO,
    autocast,
    build_cfg,
    build_model,
    random_targets,
)
from benchmark_timing import paired_ratio, stage_times, timed

from maft_plus.allocator import retain_freed_memory
from maft_plus.modeling.losses.mask_aware import mask_aware_loss
from maft_plus.solver import build_optimizer

logger = logging.getLogger("maft_plus.benchmark")

DEFAULT_CONFIG = "configs/semantic/maftp_l_eval.yaml"
MEMORY_KEYS = ("peak_memory_mib", "peak_memory_without_output_mib", "memory_method")
# glibc: serve (and on free, unmap) allocations of 64 KiB or more with mmap
EXACT_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--size", type=int, default=640, help="input side: S means S x S")
    parser.add_argument(
        "--vocabulary",
        nargs="+",
        default=["ade150"],
        help="ade150 | ade847 | N synthetic classes (several: one inference run each)",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--measure",
        nargs="+",
        choices=("inference", "train", "loss"),
        default=["inference", "train", "loss"],
    )
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=0, help="training side (0: --size)")
    parser.add_argument("--train-segments", type=int, default=10, help="segments per image")
    parser.add_argument("--loss-segments", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--loss-size", type=int, default=512)
    parser.add_argument("--loss-queries", type=int, default=100)
    parser.add_argument("--output", default="", help="write the results as JSON here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the measurements (in a child)


def measure_inference(args: argparse.Namespace, spec: str) -> dict:
    """CLIP-V trunk time, end-to-end semantic inference time and peak memory, one vocabulary."""
    cfg = build_cfg(args)
    device = torch.device(args.device)
    model, info = build_model(args, cfg, spec, training=False)
    image = torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8)
    inputs = [{"image": image}]
    with torch.inference_mode():
        images = model.preprocess(inputs).tensor  # (1, 3, H, W)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)

        def trunk() -> None:
            with autocast(args):  # as the model runs CLIP-V under MODEL.MAFT_PLUS.TEST.AUTOCAST
                model.backbone(images)

        memory = PeakMemory(device)
        memory.start()  # the trunk's peak is part of inference's: the peak is inference's
        trunk_times, infer_times = timed(
            [trunk, lambda: model(inputs)], device, args.warmup, args.repeats
        )
        peak = memory.peak_mib()
        outputs = model(inputs)[0]
        stages = stage_times(model, inputs, device, args.repeats)
    trunk_gflop = product_gflop(model, trunk)
    inference_gflop = product_gflop(model, lambda: model(inputs))
    output_mib = sum(t.numel() * t.element_size() for t in outputs.values()) / MIB
    trunk_s, infer_s = statistics.median(trunk_times), statistics.median(infer_times)
    ratio, round_ratios = paired_ratio(infer_times, trunk_times)
    return {
        **info,
        "trunk_ms": trunk_s * 1e3,
        "inference_ms": infer_s * 1e3,
        "ratio": ratio,  # the median of the rounds' inference / trunk
        "round_ratios": round_ratios,
        "images_per_s": 1.0 / infer_s,
        "peak_memory_mib": peak,
        "semantic_output_mib": output_mib,
        "peak_memory_without_output_mib": peak - output_mib,
        "memory_method": memory.method,
        "stages_ms": stages,
        "trunk_gflop": trunk_gflop,  # matrix products and convolutions only
        "inference_gflop": inference_gflop,
        "product_ratio": inference_gflop / trunk_gflop,  # the time ratio at equal product speed
    }


def measure_train(args: argparse.Namespace, spec: str) -> dict:
    """One optimizer step (forward, backward, AdamW) of MAFTPlus(cfg, training=True), and its ratio
    to the step's floor (the trunks alone), timed round by round in the same run."""
    cfg = build_cfg(args)
    device = torch.device(args.device)
    model, info = build_model(args, cfg, spec, training=True)
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(args.device, enabled=args.amp == "fp16")
    size = args.train_size or args.size
    batch = random_targets(args.train_batch, size, args.train_segments, info["num_classes"])

    def step() -> None:
        with autocast(args):
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    def floor() -> None:
        """What no step can avoid: the student trunk's forward and backward, the teacher's
        forward (a scalar of every feature stands in for the losses)."""
        with autocast(args):
            images = model.preprocess(batch).tensor  # (B, 3, H, W)
            features = model.backbone(images)
            if model.teacher is not None:
                with torch.no_grad():
                    model.teacher(images)
        scaler.scale(sum(f.float().mean() for f in features.values())).backward()
        optimizer.zero_grad(set_to_none=True)

    memory = PeakMemory(device)
    memory.start()
    step_times, floor_times = timed([step, floor], device, args.warmup, args.repeats)
    step_s = statistics.median(step_times)
    ratio, round_ratios = paired_ratio(step_times, floor_times)
    return {
        **info,
        "batch": args.train_batch,
        "size": size,
        "segments_per_image": args.train_segments,
        "step_ms": step_s * 1e3,
        "floor_ms": statistics.median(floor_times) * 1e3,
        "floor_ratio": ratio,  # the median of the rounds' step / floor
        "round_floor_ratios": round_ratios,
        "images_per_s": args.train_batch / step_s,
        "peak_memory_mib": memory.peak_mib(),
        "memory_method": memory.method,
    }


def measure_loss(args: argparse.Namespace, segments: int) -> dict:
    """Forward and backward of the mask-aware loss alone for ``segments`` segments."""
    device = torch.device(args.device)
    size, queries, num_classes = args.loss_size, args.loss_queries, 150
    out_vocab_logits = torch.randn(1, queries, num_classes + 1, device=device, requires_grad=True)
    mask_logits = torch.randn(1, queries, size // 4, size // 4, device=device)
    batch = random_targets(1, size, segments, num_classes)
    instances = batch[0]["instances"]
    targets = [{"labels": instances.gt_classes.to(device), "masks": instances.gt_masks.to(device)}]

    def run() -> None:
        mask_aware_loss(out_vocab_logits, mask_logits, targets).backward()

    memory = PeakMemory(device)
    memory.start()
    loss_s = statistics.median(timed([run], device, args.warmup, args.repeats)[0])
    return {
        "segments": int(instances.gt_classes.numel()),
        "size": size,
        "queries": queries,
        "time_ms": loss_s * 1e3,
        "peak_memory_mib": memory.peak_mib(),
        "mask_buffer_mib": queries * size * size * 4 / MIB,  # one (Q, H, W) float32 buffer
        "memory_method": memory.method,
    }


def run_worker(args: argparse.Namespace) -> None:
    """Child process: one measurement, its result written as JSON to the path in the job."""
    job = json.loads(args.worker)
    # As training, evaluation and the demos run; not in the memory runs (their MALLOC_ variable
    # wins), nor under MAFT_PLUS_RETAIN_FREED_MEMORY=0 (to time glibc's defaults).
    retained = retain_freed_memory()
    if job.get("memory_run"):  # peak memory only: one measured call after a warm-up
        args.warmup, args.repeats = max(args.warmup, 1), 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if job["kind"] == "inference":
        result = measure_inference(args, job["vocabulary"])
    elif job["kind"] == "train":
        result = measure_train(args, job["vocabulary"])
    else:
        result = measure_loss(args, job["segments"])
    result["freed_memory"] = "retained" if retained else "returned (glibc's defaults)"
    Path(job["result"]).write_text(json.dumps(result))


def in_subprocess(argv: list[str], job: dict, env: dict | None = None) -> dict:
    """Run one measurement in a fresh Python process so that its peak memory is its own."""
    with tempfile.TemporaryDirectory() as tmp:
        job = {**job, "result": str(Path(tmp) / "result.json")}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
        subprocess.run([*command, *argv], check=True, cwd=REPO, env=env)
        return json.loads(Path(job["result"]).read_text())


def measure(argv: list[str], job: dict, device: str) -> dict:
    """One measurement; on CPU its peak memory comes from a second run (see the module doc)."""
    result = in_subprocess(argv, job)
    if device != "cpu":
        return result
    memory = in_subprocess(
        argv, {**job, "memory_run": True}, env={**os.environ, **EXACT_MEMORY_ENV}
    )
    result.update({key: memory[key] for key in MEMORY_KEYS if key in memory})
    result["memory_method"] += ", in a run with MALLOC_MMAP_THRESHOLD_=65536"
    return result


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return None
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    results: dict = {
        "config": args.config_file,
        "opts": args.opts,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "size": args.size,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "threads": args.threads or torch.get_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    if "inference" in args.measure:
        results["inference"] = [
            measure(argv, {"kind": "inference", "vocabulary": spec}, args.device)
            for spec in args.vocabulary
        ]
    if "train" in args.measure:
        job = {"kind": "train", "vocabulary": args.vocabulary[0]}
        results["train"] = measure(argv, job, args.device)
    if "loss" in args.measure:
        results["loss_memory"] = [
            measure(argv, {"kind": "loss", "segments": n}, args.device) for n in args.loss_segments
        ]
    notes = [r["text_embeddings"] for r in results.get("inference", [])]
    notes += [results["train"]["text_embeddings"]] if "train" in results else []
    results["text_embeddings"] = notes[0] if notes else "not used"
    timed_runs = [*results.get("inference", []), *results.get("loss_memory", [])]
    timed_runs += [results["train"]] if "train" in results else []
    results["freed_memory"] = timed_runs[0]["freed_memory"] if timed_runs else "not used"
    results["targets"] = check_targets(results)
    print(table(results))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
