"""float32, bfloat16 and the bfloat16 fast path side by side: one tools/benchmark.py run each.

    python tools/benchmark_precisions.py --size 640 --vocabulary ade150 --warmup 1 --repeats 3 \
        --out output/precisions

Runs ``tools/benchmark.py --measure inference`` once per precision in ``--amp`` (``PRECISIONS``)
and writes each run's JSON to ``--out``. Then it prints one table per vocabulary, and writes the
tables to ``side_by_side.md``: every precision's stage times, its inference and trunk times, and
inference / trunk. The fast path's ratio is to the bfloat16 trunk, since its trunk runs under the
same autocast; its target is at most ``FAST_PATH_TARGET``. The header says whether this CPU
computes bfloat16 natively (AVX-512-BF16, AMX or Arm's BF16; `maft_plus.native_precision`).
Where it does not, bfloat16 is emulated and slow, and its times say nothing about a machine that
has it.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# precision -> tools/benchmark.py's --amp and the config overrides after it ("bf16-fast": the
# bfloat16 fast path, the pixel decoder under the autocast too)
PRECISIONS = {
    "none": ("none", ()),
    "bf16": ("bf16", ()),
    "bf16-fast": ("bf16", ("MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST", "True")),
    "fp16": ("fp16", ()),
}
FAST_PATH_TARGET = 1.15  # bf16-fast inference / bfloat16 trunk


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--amp", nargs="+", default=["none", "bf16", "bf16-fast"], choices=tuple(PRECISIONS)
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--size", type=int, default=640, help="input side")
    parser.add_argument("--vocabulary", nargs="+", default=["ade150"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "output" / "precisions"))
    # anything else (--config-file, --threads, config overrides) goes to tools/benchmark.py
    args, args.options = parser.parse_known_args(argv)
    return args


def benchmark_command(
    precision: str,
    output: Path,
    settings: argparse.Namespace,
    *,
    device: str,
    options: tuple[str, ...] = (),
) -> list[str]:
    """The ``tools/benchmark.py`` command line of one precision (a key of ``PRECISIONS``).

    Args:
        settings: its ``size``, ``vocabulary``, ``warmup`` and ``repeats`` are passed on.
        options: more of the benchmark's options (a config file, say), before the overrides.
    """
    amp, overrides = PRECISIONS[precision]
    return [
        sys.executable,
        str(REPO / "tools" / "benchmark.py"),
        *("--device", device, "--size", str(settings.size), "--measure", "inference"),
        *("--amp", amp, "--vocabulary", *settings.vocabulary),
        *("--warmup", str(settings.warmup), "--repeats", str(settings.repeats)),
        *("--output", str(output)),
        *options,
        *overrides,
    ]


def bfloat16_note(flags: list[str] | None) -> str:
    """The table header's words on a CPU's bfloat16, from `native_flags`' answer."""
    if flags is None:
        return "bfloat16 support unknown"
    return f"bfloat16 native ({', '.join(flags)})" if flags else "bfloat16 emulated"


def side_by_side(runs: dict[str, dict], cpu_note: str | None = None) -> str:
    """Markdown tables of the runs' stages and ratios, one per vocabulary.

    Args:
        runs: precision -> the JSON results of its tools/benchmark.py run.
        cpu_note: `bfloat16_note` of the machine, for a CPU run (None: not a CPU run).
    """
    precisions = list(runs)
    first = runs[precisions[0]]
    where = first["device"] if cpu_note is None else f"cpu, {cpu_note}"
    lines = []
    for i, row in enumerate(first["inference"]):
        rows = {precision: runs[precision]["inference"][i] for precision in precisions}
        lines += [
            f"{row['vocabulary']} ({where}, {first['size']}x{first['size']}, median of "
            f"{first['repeats']})",
            f"| ms | {' | '.join(precisions)} |",
            f"|---|{'---|' * len(precisions)}",
        ]
        for stage in row["stages_ms"]:
            times = " | ".join(f"{rows[p]['stages_ms'][stage]:.0f}" for p in precisions)
            lines.append(f"| {stage} | {times} |")
        for key, name in (("inference_ms", "inference"), ("trunk_ms", "trunk (paired rounds)")):
            lines.append(f"| {name} | {' | '.join(f'{rows[p][key]:.0f}' for p in precisions)} |")
        ratios = " | ".join(f"{rows[p]['ratio']:.2f}x" for p in precisions)
        lines.append(f"| inference / trunk | {ratios} |")
        if "bf16-fast" in rows:
            ratio = rows["bf16-fast"]["ratio"]
            verdict = "PASS" if ratio <= FAST_PATH_TARGET else "MISS"
            lines.append(
                f"{verdict} bf16-fast inference / bfloat16 trunk = {ratio:.2f}x "
                f"(target <= {FAST_PATH_TARGET})"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for precision in args.amp:
        output = out / f"{args.device}_{precision}.json"
        command = benchmark_command(
            precision, output, args, device=args.device, options=tuple(args.options)
        )
        print(f"$ {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True, cwd=REPO)
        runs[precision] = json.loads(output.read_text())
    cpu_note = None
    if args.device == "cpu":
        # here, not at the top: tools/device_benchmark.py imports this module on a GPU machine
        # before maft_plus's dependencies are installed there
        import torch

        from maft_plus.native_precision import native_flags

        cpu_note = bfloat16_note(native_flags(torch.bfloat16))
    tables = side_by_side(runs, cpu_note)
    (out / "side_by_side.md").write_text(tables)
    print(tables)
    return runs


if __name__ == "__main__":
    main()
