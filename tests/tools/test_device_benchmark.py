"""tools/device_benchmark.py: the wheels it carries, its refusal without CUDA, its parity script."""

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from script_loader import load_script

REPO = Path(__file__).resolve().parents[2]


def load_tool():
    return load_script("tools/device_benchmark.py")


def test_prepare_lists_the_pinned_packages_a_gpu_image_lacks():
    printed = subprocess.run(
        [sys.executable, str(REPO / "tools" / "device_benchmark.py"), "prepare", "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tool = load_tool()
    pins = tool.requirement_pins()
    names = [line.split("==")[0] for line in printed]
    assert names == [*tool.CARRIED, *tool.EXTRAS, "sal-detectron2"]  # detectron2 last
    for line in printed:
        name, version = line.split("==")
        if name.lower() in pins:  # the same versions as the project's requirements
            assert version == pins[name.lower()], line
    assert pins["open_clip_torch"] and pins["sal-detectron2"] == "0.7.2"
    assert not {"torch", "numpy", "gradio"} & {name.lower() for name in names}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_run_refuses_without_cuda(tmp_path):
    tool = load_tool()
    with pytest.raises(SystemExit, match="no CUDA device is visible"):
        tool.main(["run", "--dir", str(tmp_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing installed or written


def test_it_loads_where_only_torch_is_installed():
    """On the GPU machine it starts before maft_plus's dependencies are installed there."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('maft_plus', 'detectron2', 'open_clip', 'fvcore'):\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(REPO / 'tools')!r})\n"
        "import device_benchmark\n"
        "device_benchmark.parse_args(['run', '--out', 'x'])\n"
        "print('loaded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, cwd=REPO / "tools"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded"


def test_parity_script_runs_the_tiny_model_on_both_devices_it_is_given():
    tool = load_tool()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    report = tool.parity(env, ("cpu", "cpu"))  # the same device twice: no difference at all
    assert report == {"in_vocab_logits": 0.0, "out_vocab_logits": 0.0, "pred_masks": 0.0}


def make_wheel(folder: Path, name: str, version: str, tag: str, files: dict[str, str]) -> Path:
    """A minimal wheel holding ``files`` (path -> text), tagged ``tag`` (e.g. py3-none-any)."""
    dist = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = "".join(f"{path},,\n" for path in contents) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in {**contents, f"{dist}/RECORD": record}.items():
            wheel.writestr(member, text)
    return path


def test_install_puts_the_wheels_in_their_own_folder_without_detectron2_extras(tmp_path):
    wheels, site = tmp_path / "whl", tmp_path / "site"
    wheels.mkdir()
    make_wheel(wheels, "yacs", "0.1.8", "py3-none-any", {"yacs/__init__.py": "VALUE = 1\n"})
    make_wheel(  # like sal-detectron2: cp310-tagged, a compiled _C and a stray `tools` package
        wheels,
        "sal_detectron2",
        "0.7.2",
        "cp310-none-any",
        {
            "detectron2/__init__.py": "",
            "detectron2/_C.cpython-310-x86_64-linux-gnu.so": "not a library",
            "tools/__init__.py": "",
        },
    )
    env = load_tool().install(wheels, site)
    assert (site / "yacs" / "__init__.py").is_file()
    assert (site / "detectron2" / "__init__.py").is_file()  # installed despite its cp310 tag
    assert not list((site / "detectron2").glob("_C.*.so")) and not (site / "tools").exists()
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(site), str(REPO)]
    assert env["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(SystemExit, match="no wheels"):
        load_tool().install(tmp_path / "empty", site)


@pytest.mark.parametrize(
    ("precision", "autocast", "fast_path"),
    [("none", "", False), ("bf16", "bfloat16", False), ("bf16-fast", "bfloat16", True)],
)
def test_each_precision_benchmarks_the_config_it_names(tmp_path, precision, autocast, fast_path):
    tool = load_tool()
    args = tool.parse_args(["run"])
    command = tool.benchmark_command(args, precision, tmp_path / "out.json")
    assert command[1] == str(REPO / "tools" / "benchmark.py")
    benchmark_args = importlib.import_module("benchmark").parse_args(command[2:])
    cfg = importlib.import_module("benchmark_setup").build_cfg(benchmark_args)
    assert benchmark_args.device == "cuda" and benchmark_args.size == 800
    assert autocast == cfg.MODEL.MAFT_PLUS.TEST.AUTOCAST
    assert cfg.MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST is fast_path
