"""tools/benchmark.py with the tiny model: every measurement runs and reports positive numbers.

Its helpers are its sibling modules (tools/benchmark_*.py), on the path by tests/tools/conftest.py.
"""

import importlib
import json
import platform
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_tool(name: str = "benchmark"):
    return importlib.import_module(name)


def test_benchmark_reports_inference_training_and_loss_memory(tmp_path, capsys):
    output = tmp_path / "bench" / "results.json"
    tool = load_tool()
    results = tool.main(
        [
            *("--config-file", str(REPO / "configs/tiny/maftp_tiny.yaml")),
            *("--size", "64", "--warmup", "0", "--repeats", "1", "--threads", "1"),
            *("--vocabulary", "20", "--train-batch", "1", "--train-segments", "3"),
            *("--loss-segments", "2", "6", "--loss-size", "64", "--loss-queries", "8"),
            *("--output", str(output)),
        ]
    )
    saved = json.loads(output.read_text())
    assert saved == json.loads(json.dumps(results))
    (inference,) = saved["inference"]
    assert (inference["num_classes"], inference["num_synonyms"]) == (20, 69)
    for key in ("trunk_ms", "inference_ms", "ratio", "images_per_s", "peak_memory_mib"):
        assert inference[key] > 0, key
    assert len(inference["round_ratios"]) == 1 and inference["round_ratios"][0] > 0
    assert "MALLOC_MMAP_THRESHOLD_=65536" in inference["memory_method"]  # the exact-memory run
    stages = inference["stages_ms"]
    assert list(stages) == [
        "clip_v_trunk",
        "pixel_decoder",
        "transformer_decoder",
        "clip_heads",
        "postprocess",
        "preprocess",
    ]
    assert all(value > 0 for value in stages.values()), stages
    # the stages are parts of one call: together about the call's time (a separate median)
    assert 0.5 * inference["inference_ms"] < sum(stages.values()) < 2 * inference["inference_ms"]
    # products: the trunk's are a part of inference's, counted the same way
    assert 0 < inference["trunk_gflop"] < inference["inference_gflop"]
    assert inference["product_ratio"] == inference["inference_gflop"] / inference["trunk_gflop"]
    # the default output: an int64 label map and a float32 confidence map
    assert inference["semantic_output_mib"] == 64 * 64 * (8 + 4) / 2**20
    train = saved["train"]
    assert (train["batch"], train["size"]) == (1, 64)
    for key in ("step_ms", "floor_ms", "images_per_s", "peak_memory_mib"):
        assert train[key] > 0, key
    # The floor is a part of the step, timed in the same rounds.
    assert train["floor_ms"] < train["step_ms"] and len(train["round_floor_ratios"]) == 1
    assert (
        min(train["round_floor_ratios"]) <= train["floor_ratio"] <= max(train["round_floor_ratios"])
    )
    assert [row["segments"] for row in saved["loss_memory"]] == [2, 6]
    for row in saved["loss_memory"]:
        assert row["time_ms"] > 0 and row["peak_memory_mib"] > 0
        assert row["mask_buffer_mib"] == 8 * 64 * 64 * 4 / 2**20
    assert "text tower not timed" in saved["text_embeddings"]
    # the timed runs reuse freed memory, as training and evaluation do (on glibc)
    retained = platform.libc_ver()[0] == "glibc"
    assert saved["freed_memory"] == ("retained" if retained else "returned (glibc's defaults)")
    assert saved["targets"] and all(t.startswith(("PASS", "MISS")) for t in saved["targets"])
    printed = capsys.readouterr().out
    assert "| inference 20 synthetic classes | 20 | 69 |" in printed  # reference synonym counts
    assert "L_ma, 6 segments" in printed
    assert f"freed CPU memory in the timed runs: {saved['freed_memory']} " in printed
    assert "train step / floor = " in printed and "(floor) |" in printed
    assert "stages of inference 20 synthetic classes, ms: clip_v_trunk " in printed
    assert "matrix products of inference 20 synthetic classes: " in printed


def test_synthetic_vocabularies_follow_ade150_synonym_counts():
    names, source = load_tool("benchmark_setup").vocabulary_names("300")
    assert len(names) == 300 and source == "300 synthetic classes"
    counts = [len(name.split(",")) for name in names]
    assert counts[:150] == counts[150:]  # ADE-150's per-class counts, cycled
    assert sum(counts[:150]) == 403  # the synonyms of the reference ADE-150 list


def test_amp_and_channels_last_flags_set_the_model_options():
    tool, setup = load_tool(), load_tool("benchmark_setup")
    plain = setup.build_cfg(tool.parse_args([]))
    assert plain.MODEL.MAFT_PLUS.TEST.AUTOCAST == ""
    assert plain.MODEL.MAFT_PLUS.CHANNELS_LAST is False
    fast = setup.build_cfg(tool.parse_args(["--amp", "bf16", "--channels-last"]))
    assert fast.MODEL.MAFT_PLUS.TEST.AUTOCAST == "bfloat16"
    assert fast.MODEL.MAFT_PLUS.CHANNELS_LAST is True
    assert setup.build_cfg(tool.parse_args(["--amp", "fp16"])).MODEL.MAFT_PLUS.TEST.AUTOCAST == (
        "float16"
    )


def test_the_ratio_compares_times_round_by_round():
    """Rounds 1 and 2 at 1.3x on a machine whose speed drifts, round 3 an outlier at 1.39x: the
    medians of the two columns come from different rounds (5.7 / 4.1 = 1.39x); the median of
    the rounds' own ratios does not."""
    trunk = [4.0, 4.8, 4.1]
    inference = [5.2, 6.24, 5.7]
    ratio, rounds = load_tool("benchmark_timing").paired_ratio(inference, trunk)
    assert rounds == pytest.approx([1.3, 1.3, 5.7 / 4.1])
    assert ratio == pytest.approx(1.3)
    assert statistics.median(inference) / statistics.median(trunk) == pytest.approx(5.7 / 4.1)
