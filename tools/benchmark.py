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
leftovers; times come from the first subprocess, which allocates as usual. Times are medians
over rounds; a round runs the trunk then the whole inference, and the ratio is the median of the
rounds' own ratios (steady under drifts of a shared machine's speed). After the timed rounds,
as many more calls are timed stage by stage (forward hooks on CLIP-V, the pixel decoder and the
transformer decoder; the rest of predict; post-processing) to show where the time goes.
Text embeddings are prepared before any timing, so the text tower is never timed; with random
weights they are random unit rows (the text tower's output would be as meaningless and slow to
get). Targets (checked here, never by the tests): inference <= 1.3x the CLIP-V trunk; peak
inference memory with ADE-847 within 1.2x of ADE-150 (also reported without the returned semantic
output, which grows with K under MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT scores); the mask-aware
loss's peak not growing with the number of segments by more than one (Q, H, W) float mask buffer.
"""

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from detectron2.structures import Instances

from maft_plus.config import setup_cfg
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary
from maft_plus.data.vocabulary.presets import parse_vocabulary
from maft_plus.modeling import MAFTPlus
from maft_plus.modeling.losses.mask_aware import mask_aware_loss
from maft_plus.solver import build_optimizer

logger = logging.getLogger("maft_plus.benchmark")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/semantic/maftp_l_eval.yaml"
ADE847_NUM_CLASSES = 847
MIB = 2**20
MEMORY_KEYS = ("peak_memory_mib", "peak_memory_without_output_mib", "memory_method")
# glibc: serve (and on free, unmap) allocations of 64 KiB or more with mmap
EXACT_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
TARGET_RATIO = 1.3  # inference time / CLIP-V trunk time
TARGET_VOCAB_MEMORY = 1.2  # peak inference memory, ADE-847 / ADE-150


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


# ---------------------------------------------------------------- vocabularies and inputs


def synthetic_names(num_classes: int) -> list[str]:
    """``num_classes`` made-up classes with the reference ADE-150 list's synonym counts, cycled."""
    counts = [len(n.split(",")) for n in read_builtin_vocabulary("ade150")]
    return [
        ", ".join(f"class{k} synonym{j}" for j in range(counts[k % len(counts)]))
        for k in range(num_classes)
    ]


def vocabulary_names(spec: str) -> tuple[list[str], str]:
    """Class strings for ``spec`` and where they came from."""
    if spec.isdigit():
        return synthetic_names(int(spec)), f"{spec} synthetic classes"
    return parse_vocabulary(spec)[0], spec


def random_text_embedder(dim: int, device: torch.device):
    """A stand-in for the text embedder: fixed random unit rows per synonym (random CLIP only)."""
    cache: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(0)

    def embed(vocabulary: Vocabulary) -> torch.Tensor:
        for name in vocabulary.synonyms:
            if name not in cache:
                cache[name] = F.normalize(torch.randn(dim, generator=generator), dim=0).to(device)
        return torch.stack([cache[name] for name in vocabulary.synonyms])  # (S, D)

    return embed


def prepare_text(model: MAFTPlus, cfg) -> str:
    """Make the text rows of the current vocabulary ready before timing; say how."""
    if not cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED:
        model.text_embedder = random_text_embedder(model.backbone.embed_dim, model.device)
        model.text_embeddings()
        return "random CLIP: random unit text rows, prepared before timing (text tower not timed)"
    model.text_embeddings()  # fills the per-synonym cache
    return "encoded and cached before timing (text tower not timed)"


def random_targets(batch: int, size: int, segments: int, num_classes: int) -> list[dict]:
    """Random images with ``segments`` blocky segments of distinct random classes each."""
    inputs = []
    for _ in range(batch):
        cells = torch.randint(0, segments, (1, 1, max(size // 8, 1), max(size // 8, 1)))
        ids = F.interpolate(cells.float(), size=(size, size), mode="nearest")[0, 0].long()
        masks = ids[None] == torch.arange(segments)[:, None, None]  # (N, H, W)
        masks = masks[masks.flatten(1).any(dim=1)]
        instances = Instances((size, size))
        instances.gt_classes = torch.randperm(num_classes)[: masks.shape[0]]
        instances.gt_masks = masks
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        inputs.append({"image": image, "instances": instances})
    return inputs


# ---------------------------------------------------------------- timing and memory


class PeakMemory:
    """Peak memory rise over a block: CUDA allocator peak or CPU resident high-water mark."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0
        self.method = ""

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated rise"
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
            self.method = "VmHWM rise (reset via /proc/self/clear_refs)"
        except OSError:
            self.method = "ru_maxrss rise (high-water mark not resettable: may under-report)"
        self.base = _status_kib("VmRSS") * 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / MIB
        if self.method.startswith("VmHWM"):
            return (_status_kib("VmHWM") * 1024 - self.base) / MIB
        import resource

        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base) / MIB


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def seconds(fn, device: torch.device) -> float:
    """Wall time of one call of ``fn`` (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def timed(fns: list, device: torch.device, warmup: int, repeats: int) -> list[list[float]]:
    """Seconds of each of ``fns`` in each of ``repeats`` rounds after ``warmup`` rounds.

    A round calls every function once, so that drifts of the machine's speed (other load, clock
    changes) reach all of them alike within a round: compare them round by round
    (`paired_ratio`).

    Returns:
        One list of ``repeats`` seconds per function, in round order.
    """
    times = [[] for _ in fns]
    for i in range(warmup + repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            elapsed = seconds(fn, device)
            if i >= warmup:
                fn_times.append(elapsed)
    return times


def paired_ratio(numerators: list[float], denominators: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of each round's ratio, and those ratios.

    Unlike the ratio of the two medians, a drift of the machine's speed between rounds (which
    scales both times of a round alike) does not move it.
    """
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return statistics.median(ratios), ratios


# Stages of one inference call, timed by forward hooks (modules) and wrappers (methods).
STAGE_MODULES = {
    "clip_v_trunk": lambda model: model.backbone,
    "pixel_decoder": lambda model: model.sem_seg_head.pixel_decoder,
    "transformer_decoder": lambda model: model.sem_seg_head.predictor,
}
STAGE_METHODS = ("predict", "postprocess")


def stage_times(model: MAFTPlus, inputs: list[dict], device: torch.device, repeats: int) -> dict:
    """Median ms per stage of ``model(inputs)`` over ``repeats`` calls (after the timed rounds).

    Returns ``clip_v_trunk``, ``pixel_decoder``, ``transformer_decoder``, ``clip_heads`` (the
    rest of ``predict``: mask pooling on CLIP features, CDT, the CLIP classifier),
    ``postprocess`` and ``preprocess`` (the rest of the call: normalization, padding, casts).
    """
    spans: dict[str, float] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def start(name: str) -> None:
        sync()
        spans[name] = spans.get(name, 0.0) - time.perf_counter()

    def stop(name: str) -> None:
        sync()
        spans[name] += time.perf_counter()

    handles = []
    for name, get in STAGE_MODULES.items():
        module = get(model)
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: start(n)))
        handles.append(module.register_forward_hook(lambda *_, n=name: stop(n)))
    for name in STAGE_METHODS:
        method = getattr(model, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            start(_name)
            result = _method(*args, **kwargs)
            stop(_name)
            return result

        setattr(model, name, wrapped)  # an instance attribute, deleted below
    rounds = []
    try:
        for _ in range(repeats):
            spans.clear()
            total = seconds(lambda: model(inputs), device)
            clip_heads = spans["predict"] - sum(spans[name] for name in STAGE_MODULES)
            rest = total - spans["predict"] - spans["postprocess"]
            rounds.append(
                {
                    **{name: spans[name] for name in STAGE_MODULES},
                    "clip_heads": clip_heads,
                    "postprocess": spans["postprocess"],
                    "preprocess": rest,
                }
            )
    finally:
        for handle in handles:
            handle.remove()
        for name in STAGE_METHODS:
            delattr(model, name)
    return {name: statistics.median(r[name] for r in rounds) * 1e3 for name in rounds[0]}


def autocast(args: argparse.Namespace):
    if args.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    return torch.autocast(device_type=args.device, dtype=dtype)


def build_cfg(args: argparse.Namespace):
    config = Path(args.config_file)
    if not config.is_file() and (REPO / config).is_file():
        config = REPO / config
    opts = ["MODEL.MAFT_PLUS.CLIP_PRETRAINED", "", "MODEL.DEVICE", args.device]
    opts += ["MODEL.MAFT_PLUS.CHANNELS_LAST", str(args.channels_last)]
    if args.amp != "none":  # inference autocasts itself; training steps run under autocast()
        opts += ["MODEL.MAFT_PLUS.TEST.AUTOCAST", {"bf16": "bfloat16", "fp16": "float16"}[args.amp]]
    return setup_cfg(str(config), [*opts, *args.opts])


def build_model(args: argparse.Namespace, cfg, spec: str, training: bool):
    model = MAFTPlus(cfg, training=training).to(torch.device(args.device))
    model.train(training)
    names, source = vocabulary_names(spec)
    model.set_vocabulary(names)
    text_note = prepare_text(model, cfg)
    vocab = model.vocabulary
    info = {"vocabulary": source, "num_classes": vocab.num_classes}
    return model, {**info, "num_synonyms": vocab.num_synonyms, "text_embeddings": text_note}


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
    }


def measure_train(args: argparse.Namespace, spec: str) -> dict:
    """One optimizer step (forward, backward, AdamW) of MAFTPlus(cfg, training=True)."""
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

    memory = PeakMemory(device)
    memory.start()
    step_s = statistics.median(timed([step], device, args.warmup, args.repeats)[0])
    return {
        **info,
        "batch": args.train_batch,
        "size": size,
        "segments_per_image": args.train_segments,
        "step_ms": step_s * 1e3,
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


# ---------------------------------------------------------------- report


def check_targets(results: dict) -> list[str]:
    lines = []
    for row in results.get("inference", []):
        ok = row["ratio"] <= TARGET_RATIO
        low, high = min(row["round_ratios"]), max(row["round_ratios"])
        lines.append(
            f"{'PASS' if ok else 'MISS'} inference / trunk = {row['ratio']:.2f}x, rounds "
            f"{low:.2f}-{high:.2f}x (target <= {TARGET_RATIO}) [{row['vocabulary']}]"
        )
    rows = {row["num_classes"]: row for row in results.get("inference", [])}
    if 150 in rows and ADE847_NUM_CLASSES in rows:
        for key, what in (
            ("peak_memory_mib", "peak memory"),
            ("peak_memory_without_output_mib", "peak memory without the semantic output"),
        ):
            ratio = rows[ADE847_NUM_CLASSES][key] / rows[150][key]
            lines.append(
                f"{'PASS' if ratio <= TARGET_VOCAB_MEMORY else 'MISS'} {what}, ADE-847 / ADE-150 ="
                f" {ratio:.2f}x (target <= {TARGET_VOCAB_MEMORY})"
            )
    losses = results.get("loss_memory", [])
    if len(losses) > 1:
        growth = losses[-1]["peak_memory_mib"] - losses[0]["peak_memory_mib"]
        buffer = losses[0]["mask_buffer_mib"]
        lines.append(
            f"{'PASS' if growth <= buffer else 'MISS'} L_ma peak growth {losses[0]['segments']} -> "
            f"{losses[-1]['segments']} segments = {growth:.0f} MiB (one mask buffer: {buffer:.0f})"
        )
    return lines


def table(results: dict) -> str:
    lines = [
        f"device {results['device']}, {results['size']}x{results['size']}, amp {results['amp']}, "
        f"channels_last {results['channels_last']}, threads {results['threads']}, median of "
        f"{results['repeats']} after {results['warmup']} warm-up",
        f"text embeddings: {results['text_embeddings']}",
        "| measurement | K | S | time ms | trunk ms | ratio | img/s | peak MiB | w/o output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("inference", []):
        lines.append(
            f"| inference {r['vocabulary']} | {r['num_classes']} | {r['num_synonyms']} | "
            f"{r['inference_ms']:.0f} | {r['trunk_ms']:.0f} | {r['ratio']:.2f} | "
            f"{r['images_per_s']:.2f} | {r['peak_memory_mib']:.0f} | "
            f"{r['peak_memory_without_output_mib']:.0f} |"
        )
    if "train" in results:
        r = results["train"]
        lines.append(
            f"| train step, batch {r['batch']} at {r['size']} | {r['num_classes']} | "
            f"{r['num_synonyms']} | {r['step_ms']:.0f} | | | {r['images_per_s']:.2f} | "
            f"{r['peak_memory_mib']:.0f} | |"
        )
    for r in results.get("loss_memory", []):
        lines.append(
            f"| L_ma, {r['segments']} segments, Q={r['queries']} at {r['size']} | | | "
            f"{r['time_ms']:.0f} | | | | {r['peak_memory_mib']:.0f} | |"
        )
    for r in results.get("inference", []):
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_ms"].items())
        lines.append(f"stages of inference {r['vocabulary']}, ms: {stages}")
    return "\n".join(lines + [""] + check_targets(results))


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
    results["targets"] = check_targets(results)
    print(table(results))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
