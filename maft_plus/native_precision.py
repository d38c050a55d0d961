"""Whether this CPU computes bfloat16 and float16 natively, read from its feature flags.

Without native support, PyTorch emulates the 16-bit matrix products on the CPU. On a Zen 3 EPYC
(AVX2 only, 2026-12-03) a 1024 x 1024 x 1024 product took 2.5 s in bfloat16 and 2.7 s in float16
against 18 ms in float32, so autocast there makes inference many times slower, never faster.
(CPUs with AVX-512 but neither flag emulate it with wider instructions: not measured here.)
The model warns once per process when its ``TEST.AUTOCAST`` would run like that (README,
"bfloat16 fast path").
"""

import functools
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# dtype -> the /proc/cpuinfo flags that make its products native: x86 "flags" (AVX-512 and AMX
# extensions) and aarch64 "Features" ("bf16": BFloat16 instructions, "asimdhp": half-precision
# vector arithmetic). Any one of them is enough.
NATIVE_FLAGS = {
    torch.bfloat16: ("avx512_bf16", "amx_bf16", "bf16"),
    torch.float16: ("avx512_fp16", "amx_fp16", "asimdhp"),
}
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> set[str]:
    """Every feature flag named on a ``flags`` (x86) or ``Features`` (aarch64) line of cpuinfo."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


@functools.cache
def _this_cpu_flags() -> frozenset[str] | None:
    """This machine's flags, read once; None where /proc/cpuinfo is missing (not Linux)."""
    try:
        return frozenset(cpu_flags(CPUINFO.read_text()))
    except OSError:
        return None


def native_flags(dtype: torch.dtype, cpuinfo: str | None = None) -> list[str] | None:
    """The flags that make ``dtype``'s products native on this CPU, in `NATIVE_FLAGS` order.

    Args:
        dtype: torch.bfloat16 or torch.float16.
        cpuinfo: the text of a /proc/cpuinfo (None: this machine's).

    Returns:
        The flags present: empty where ``dtype`` is emulated; None where it cannot be told (no
        /proc/cpuinfo, or a cpuinfo with no flags at all).
    """
    if dtype not in NATIVE_FLAGS:
        raise ValueError(f"native_flags: dtype must be one of {list(NATIVE_FLAGS)}, got {dtype}")
    flags = _this_cpu_flags() if cpuinfo is None else cpu_flags(cpuinfo)
    if not flags:
        return None
    return [flag for flag in NATIVE_FLAGS[dtype] if flag in flags]


_warned: set[torch.dtype] = set()


def warn_if_emulated(dtype: torch.dtype, setting: str, cpuinfo: str | None = None) -> bool:
    """Log a warning, once per dtype and process, when ``dtype`` has no native CPU support.

    Args:
        dtype: the autocast dtype the CPU is about to run in.
        setting: what asked for it, named in the warning (a config key, say).
        cpuinfo: as in `native_flags`.

    Returns:
        Whether ``dtype`` is emulated on this CPU (False where that cannot be told).
    """
    flags = native_flags(dtype, cpuinfo)
    emulated = flags == []
    if emulated and dtype not in _warned:
        _warned.add(dtype)
        name = str(dtype).removeprefix("torch.")
        logger.warning(
            "%s runs inference in %s on a CPU without native %s (none of the flags %s): its "
            "matrix products are emulated there (on an AVX2-only CPU over 100x slower than in "
            "float32). Leave it unset on this machine.",
            setting,
            name,
            name,
            ", ".join(NATIVE_FLAGS[dtype]),
        )
    return emulated
