"""Keep freed CPU memory inside the process, so that the next forward reuses it.

glibc's malloc gives every block above a threshold (128 KiB at first, raised as such blocks are
freed, never above 32 MiB) a mapping of its own, unmapped again when the block is freed, and it
hands the top of its heap back to the system once enough of it is free. A forward on the CPU
allocates and frees its activations anew on every call, so under those defaults most of them
arrive as fresh pages, each first write a page fault. On this project's 2-core machines a Large
inference at 640x640 took about 200,000 page faults and 0.6 to 0.9 s of system time, most of it
in CLIP-V (README, Performance). :func:`retain_freed_memory` fixes both thresholds high: freed
activations stay in the heap and the next call writes into pages the process already has.

The cost: the process's resident memory stays at its high-water mark instead of falling back
between calls. Training, evaluation, the demos and the benchmark's timing runs call it at
start; a script of your own can too. ``MAFT_PLUS_RETAIN_FREED_MEMORY=0`` turns it off, and it
leaves glibc's settings alone when the environment already sets any (``MALLOC_*_`` variables,
``GLIBC_TUNABLES``), as the benchmark's memory runs do.
"""

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

__all__ = ["MMAP_THRESHOLD", "OPT_OUT", "TRIM_THRESHOLD", "retain_freed_memory"]

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks of 1 GiB or more still get their own mapping (nothing in a forward is that large
# below very large images); a fixed value also stops glibc from moving the threshold itself.
MMAP_THRESHOLD = 1 << 30
# The largest value mallopt takes: the top of the heap is never handed back.
TRIM_THRESHOLD = 2**31 - 1
OPT_OUT = "MAFT_PLUS_RETAIN_FREED_MEMORY"
# Environment variables through which a user sets glibc's malloc; any of them wins over us.
_USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "GLIBC_TUNABLES",
)


def retain_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Fix glibc's mmap and trim thresholds high for this process (see the module docstring).

    Args:
        environ: the environment to read the opt-out and the user's own settings from
            (``os.environ`` when None).

    Returns:
        True when the settings were applied; False when the C library is not glibc, when
        ``MAFT_PLUS_RETAIN_FREED_MEMORY`` is ``0``, or when the environment sets glibc's malloc
        itself. Nothing changes then.
    """
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT, "1") == "0":
        return False
    user_settings = [name for name in _USER_SETTINGS if name in environ]
    if user_settings:
        logger.info("malloc left as set by %s", ", ".join(user_settings))
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library: glibc, checked above
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    applied = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    if not applied:  # a glibc that refuses these values keeps working with its own
        logger.warning("glibc refused the malloc thresholds; freed memory is handed back as usual")
    return applied
