"""GPU numbers on a machine with no package index: carry wheels there, then benchmark on CUDA.

    python tools/device_benchmark.py prepare            # here: wheels into .whl/ (git-ignored)
    python tools/device_benchmark.py run --out "$OUT"   # there, from the repository root

``prepare`` fetches (or, for packages published only as source, builds) wheels for Python 3.12 on
x86-64 Linux: the pinned requirements that a PyTorch GPU image lacks (``CARRIED``, versions from
requirements.txt), the packages they need beyond it (``EXTRAS``, versions from this environment)
and detectron2 (requirements-detectron2.txt). ``run`` checks that CUDA is visible, installs the
wheels into a folder of their own (``--site``) without touching the machine's Python, checks that
the model gives the CPU's outputs on CUDA (the tiny config, same weights and image), then runs
``tools/benchmark.py`` on CUDA for each precision in ``--amp`` and writes the JSON results, the
parity report and the printed tables to ``--out``.
"""

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import benchmark_precisions as precisions

REPO = Path(__file__).resolve().parents[1]
# Pinned requirements a PyTorch GPU image lacks; the rest (numpy, scipy, pillow, opencv, tqdm,
# safetensors, huggingface_hub, tabulate, cloudpickle, packaging, ...) are used as found there.
CARRIED = (
    "open_clip_torch",
    "timm",
    "panopticapi-lite",
    "fvcore",
    "iopath",
    "pycocotools",
    "termcolor",
    "yacs",
    "omegaconf",
    "hydra-core",
)
EXTRAS = ("ftfy", "wcwidth", "antlr4-python3-runtime")  # needed by the carried ones
DETECTRON2 = "sal-detectron2"
PLATFORM_OPTIONS = [
    *("--python-version", "3.12", "--implementation", "cp"),
    *("--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"),
    *("--platform", "manylinux2014_x86_64", "--platform", "any"),
]
PARITY_TOLERANCE = 1e-3  # CPU vs CUDA, fp32, tiny model: logits and mask logits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="here: fetch or build the wheels")
    prepare.add_argument("--dir", default=str(REPO / ".whl"), help="where the wheels go")
    prepare.add_argument("--list", action="store_true", help="print the pins, fetch nothing")
    run = sub.add_parser("run", help="on the GPU machine: install the wheels and benchmark")
    run.add_argument("--dir", default=str(REPO / ".whl"), help="the wheels from prepare")
    run.add_argument("--site", default="/tmp/maft_plus_site", help="where they are installed")
    run.add_argument("--out", default=os.environ.get("OUT", str(REPO / "output" / "device")))
    run.add_argument("--size", type=int, default=800, help="input side (short side 800)")
    run.add_argument(
        "--amp",
        nargs="+",
        default=["none", "bf16", "bf16-fast"],
        choices=tuple(precisions.PRECISIONS),
    )
    run.add_argument("--vocabulary", nargs="+", default=["ade150", "ade847"])
    run.add_argument("--warmup", type=int, default=5)
    run.add_argument("--repeats", type=int, default=20)
    return parser.parse_args(argv)


def requirement_pins() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of the requirements files."""
    pins = {}
    for name in ("requirements.txt", "requirements-detectron2.txt"):
        for line in (REPO / name).read_text(encoding="utf-8").splitlines():
            spec = line.split("#", 1)[0].split("--hash", 1)[0].strip()
            if "==" in spec:
                package, version = spec.split("==", 1)
                pins[package.strip().lower()] = version.strip()
    return pins


def wheel_pins() -> list[str]:
    """The ``name==version`` of every wheel to carry (detectron2 last)."""
    pins = requirement_pins()
    missing = [name for name in (*CARRIED, DETECTRON2) if name.lower() not in pins]
    if missing:
        raise SystemExit(f"device_benchmark: requirements.txt pins none of {missing}")
    carried = [f"{name}=={pins[name.lower()]}" for name in CARRIED]
    extras = [f"{name}=={importlib.metadata.version(name)}" for name in EXTRAS]
    return [*carried, *extras, f"{DETECTRON2}=={pins[DETECTRON2]}"]


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def prepare(args: argparse.Namespace) -> None:
    pins = wheel_pins()
    if args.list:
        print("\n".join(pins))
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    for pin in pins:
        if pin.startswith(DETECTRON2):  # a cp310-tagged wheel whose Python part runs on 3.12
            options = ["--python-version", "3.10", "--only-binary=:all:"]
        else:
            options = [*PLATFORM_OPTIONS, "--only-binary=:all:"]
        fetched = pip("download", "--no-deps", "-q", "-d", str(folder), *options, pin)
        if fetched.returncode != 0:  # published as source only: build a pure-Python wheel
            built = pip("wheel", "--no-deps", "-q", "-w", str(folder), pin)
            if built.returncode != 0:
                raise SystemExit(f"device_benchmark: no wheel for {pin}:\n{built.stderr}")
        print(f"prepared {pin}")
    size = sum(path.stat().st_size for path in folder.glob("*.whl")) / 2**20
    print(f"{len(pins)} wheels in {folder} ({size:.1f} MiB): carry '{folder.name}' to the machine")


def install(folder: Path, site: Path) -> dict:
    """Install the wheels into ``site``; the environment that puts them first on the path."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"device_benchmark: no wheels in {folder}; run 'prepare' first")
    site.mkdir(parents=True, exist_ok=True)
    detectron2 = [w for w in wheels if w.name.startswith(DETECTRON2.replace("-", "_"))]
    others = [w for w in wheels if w not in detectron2]
    options = ["--no-index", "--no-deps", "--no-compile", "--upgrade", "-q", "--target", str(site)]
    for batch, extra in ((others, []), (detectron2, ["--python-version", "3.10"])):
        if not batch:
            continue
        result = pip("install", *options, *extra, "--only-binary=:all:", *map(str, batch))
        if result.returncode != 0:
            raise SystemExit(f"device_benchmark: installing {batch} failed:\n{result.stderr}")
    shutil.rmtree(site / "tools", ignore_errors=True)  # detectron2's stray top-level package
    for extension in (site / "detectron2").glob("_C.*.so"):  # built for 3.10; MAFT+ needs none
        extension.unlink()
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), "HF_HUB_OFFLINE": "1"}


# argv: the two devices to compare. TF32 off, so that CUDA computes in full fp32 as the CPU does.
PARITY_SCRIPT = """
import json, sys, torch
from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
cfg = setup_cfg("configs/tiny/maftp_tiny.yaml", ["MODEL.MAFT_PLUS.CLIP_PRETRAINED", ""])
torch.manual_seed(0)
model = MAFTPlus(cfg).eval()
model.set_vocabulary([f"class {i}" for i in range(12)])
image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
keys = ("in_vocab_logits", "out_vocab_logits", "pred_masks")
outputs = []
with torch.inference_mode():
    for device in sys.argv[1:3]:
        model.to(device)
        out = model.predict(model.preprocess([{"image": image}]).tensor, with_aux=False)
        outputs.append({k: out[k].float().cpu() for k in keys})
print(json.dumps({k: (outputs[0][k] - outputs[1][k]).abs().max().item() for k in keys}))
"""


def parity(env: dict, devices: tuple[str, str] = ("cpu", "cuda")) -> dict:
    """Max |difference| of the tiny model's logits and mask logits between two devices."""
    result = subprocess.run(
        [sys.executable, "-c", PARITY_SCRIPT, *devices],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"device_benchmark: the parity check failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_parity(env: dict, out: Path) -> dict:
    """`parity` of CPU and CUDA, saved to ``out``; raise beyond ``PARITY_TOLERANCE``."""
    report = parity(env)
    (out / "parity.json").write_text(json.dumps(report, indent=2))
    if max(report.values()) > PARITY_TOLERANCE:
        raise SystemExit(
            f"device_benchmark: CUDA differs from CPU beyond {PARITY_TOLERANCE}: {report}"
        )
    return report


def benchmark_command(args: argparse.Namespace, precision: str, output: Path) -> list[str]:
    """The ``tools/benchmark.py`` command line of one precision on CUDA (``PRECISIONS``)."""
    return precisions.benchmark_command(precision, output, args, device="cuda")


def run(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "device_benchmark run: no CUDA device is visible (run it on the GPU machine)"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = install(Path(args.dir), Path(args.site))
    print(f"parity, max |CPU - CUDA|: {check_parity(env, out)}")
    log, runs = [], {}
    for amp in args.amp:
        output = out / f"cuda_{amp}.json"
        command = benchmark_command(args, amp, output)
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        log += [f"$ {' '.join(command[1:])}", result.stdout, result.stderr[-4000:]]
        print(result.stdout)
        if result.returncode != 0:
            (out / "log.txt").write_text("\n".join(log))
            raise SystemExit(f"device_benchmark: the {amp} benchmark failed:\n{result.stderr}")
        runs[amp] = json.loads(output.read_text())
    (out / "log.txt").write_text("\n".join(log))
    tables = precisions.side_by_side(runs)
    (out / "side_by_side.md").write_text(tables)
    print(tables)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "prepare":
        prepare(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
