"""maft_plus/native_precision.py: native bfloat16 and float16 read from the CPU's flags, and the
model's warning when its TEST.AUTOCAST would be emulated."""

import logging

import pytest
import torch

from maft_plus import native_precision
from maft_plus.native_precision import cpu_flags, native_flags, warn_if_emulated

ZEN3 = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
)
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd asimdhp bf16 i8mm sve\n"
NEOVERSE_N1 = "Features\t: fp asimd evtstrm aes asimdhp\n"
LOGGER = "maft_plus.native_precision"


def test_flags_come_from_the_flags_and_features_lines():
    assert cpu_flags(ZEN3) == {"fpu", "sse2", "avx2", "fma", "sha_ni"}
    assert "bf16" in cpu_flags(NEOVERSE_V1)
    assert cpu_flags("model name\t: AMD EPYC\n") == set()


@pytest.mark.parametrize(
    ("cpuinfo", "bfloat16", "float16"),
    [
        (ZEN3, [], []),
        (SAPPHIRE_RAPIDS, ["avx512_bf16", "amx_bf16"], ["avx512_fp16"]),
        (NEOVERSE_V1, ["bf16"], ["asimdhp"]),
        (NEOVERSE_N1, [], ["asimdhp"]),
        ("", None, None),  # no flags at all: cannot be told
    ],
)
def test_native_flags_per_dtype(cpuinfo, bfloat16, float16):
    assert native_flags(torch.bfloat16, cpuinfo) == bfloat16
    assert native_flags(torch.float16, cpuinfo) == float16


def test_native_flags_refuses_other_dtypes():
    with pytest.raises(ValueError, match="native_flags: dtype must be one of"):
        native_flags(torch.float32, ZEN3)


def test_an_emulated_dtype_is_warned_about_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(native_precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert warn_if_emulated(torch.bfloat16, "SOME.KEY", ZEN3)
        assert warn_if_emulated(torch.bfloat16, "SOME.KEY", ZEN3)
        assert warn_if_emulated(torch.float16, "SOME.KEY", ZEN3)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2  # one per dtype
    assert messages[0].startswith("SOME.KEY runs inference in bfloat16 on a CPU without native")
    assert "avx512_bf16, amx_bf16, bf16" in messages[0]
    assert messages[1].startswith("SOME.KEY runs inference in float16")


@pytest.mark.parametrize("cpuinfo", [SAPPHIRE_RAPIDS, NEOVERSE_V1, ""])
def test_native_or_unknown_support_is_not_warned_about(monkeypatch, caplog, cpuinfo):
    monkeypatch.setattr(native_precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert not warn_if_emulated(torch.bfloat16, "SOME.KEY", cpuinfo)
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_this_machine_is_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(SAPPHIRE_RAPIDS)
    monkeypatch.setattr(native_precision, "CPUINFO", cpuinfo)
    native_precision._this_cpu_flags.cache_clear()
    try:
        assert native_flags(torch.bfloat16) == ["avx512_bf16", "amx_bf16"]
        monkeypatch.setattr(native_precision, "CPUINFO", tmp_path / "missing")
        native_precision._this_cpu_flags.cache_clear()
        assert native_flags(torch.bfloat16) is None  # not Linux: cannot be told
    finally:
        native_precision._this_cpu_flags.cache_clear()
