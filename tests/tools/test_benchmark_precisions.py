"""tools/benchmark_precisions.py: one benchmark run per precision, their stages side by side."""

import importlib
import json

import pytest
import torch

from maft_plus.native_precision import native_flags


def load_tool():
    return importlib.import_module("benchmark_precisions")


def fake_run(device: str, ratio: float, stages: dict[str, float]) -> dict:
    """The part of a tools/benchmark.py result that the side-by-side table reads."""
    row = {
        "vocabulary": "ade150",
        "inference_ms": sum(stages.values()),
        "trunk_ms": stages["clip_v_trunk"],
        "ratio": ratio,
        "stages_ms": stages,
    }
    return {"device": device, "size": 640, "repeats": 3, "inference": [row]}


def test_the_table_puts_every_precision_beside_the_others_and_checks_the_fast_path():
    runs = {
        "none": fake_run("cpu", 1.35, {"clip_v_trunk": 5000.0, "pixel_decoder": 1200.0}),
        "bf16": fake_run("cpu", 1.71, {"clip_v_trunk": 2000.0, "pixel_decoder": 1400.0}),
        "bf16-fast": fake_run("cpu", 1.12, {"clip_v_trunk": 2000.0, "pixel_decoder": 240.0}),
    }
    tool = load_tool()
    table = tool.side_by_side(runs, tool.bfloat16_note(["amx_bf16"]))
    lines = table.splitlines()
    assert lines[0] == "ade150 (cpu, bfloat16 native (amx_bf16), 640x640, median of 3)"
    assert lines[1] == "| ms | none | bf16 | bf16-fast |"
    assert "| pixel_decoder | 1200 | 1400 | 240 |" in lines
    assert "| inference | 6200 | 3400 | 2240 |" in lines
    assert "| inference / trunk | 1.35x | 1.71x | 1.12x |" in lines
    assert "PASS bf16-fast inference / bfloat16 trunk = 1.12x (target <= 1.15)" in lines
    runs["bf16-fast"]["inference"][0]["ratio"] = 1.2
    emulated = tool.side_by_side(runs, tool.bfloat16_note([]))
    assert "MISS bf16-fast" in emulated
    assert emulated.startswith("ade150 (cpu, bfloat16 emulated, 640x640")
    unknown = tool.side_by_side(runs, tool.bfloat16_note(None))
    assert unknown.startswith("ade150 (cpu, bfloat16 support unknown, 640x640")
    assert tool.side_by_side(runs).startswith("ade150 (cpu, 640x640")  # not a CPU run


@pytest.mark.parametrize(
    ("precision", "autocast", "fast_path"),
    [("none", "", False), ("bf16", "bfloat16", False), ("bf16-fast", "bfloat16", True)],
)
def test_each_precision_benchmarks_the_config_it_names(tmp_path, precision, autocast, fast_path):
    args = load_tool().parse_args(["--config-file", "configs/tiny/maftp_tiny.yaml", "--size", "64"])
    assert args.options == ["--config-file", "configs/tiny/maftp_tiny.yaml"]
    command = load_tool().benchmark_command(
        precision, tmp_path / "out.json", args, device="cpu", options=tuple(args.options)
    )
    benchmark_args = importlib.import_module("benchmark").parse_args(command[2:])
    cfg = importlib.import_module("benchmark_setup").build_cfg(benchmark_args)
    assert benchmark_args.config_file == "configs/tiny/maftp_tiny.yaml"
    assert benchmark_args.size == 64 and benchmark_args.measure == ["inference"]
    assert autocast == cfg.MODEL.MAFT_PLUS.TEST.AUTOCAST
    assert cfg.MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST is fast_path


@pytest.mark.slow  # two benchmark runs, each of three processes: about 70 s
def test_runs_the_benchmark_per_precision_and_writes_the_table(tmp_path, capsys):
    runs = load_tool().main(
        [
            *("--amp", "none", "bf16-fast", "--size", "64", "--vocabulary", "20"),
            *("--warmup", "0", "--repeats", "1", "--out", str(tmp_path)),
            *("--config-file", "configs/tiny/maftp_tiny.yaml", "--threads", "1"),
        ]
    )
    assert list(runs) == ["none", "bf16-fast"]
    assert runs["none"]["amp"] == "none" and runs["bf16-fast"]["amp"] == "bf16"
    fast_opts = runs["bf16-fast"]["opts"]
    assert fast_opts == ["MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST", "True"]
    assert json.loads((tmp_path / "cpu_none.json").read_text()) == runs["none"]
    table = (tmp_path / "side_by_side.md").read_text()
    assert table in capsys.readouterr().out
    assert "| ms | none | bf16-fast |" in table and "bf16-fast inference / bfloat16 trunk" in table
    this_cpu = load_tool().bfloat16_note(native_flags(torch.bfloat16))
    assert f"(cpu, {this_cpu}, 64x64" in table.splitlines()[0]
