"""Peak memory of a block of work for tools/benchmark.py: CUDA allocator or CPU resident set."""

from pathlib import Path

import torch

MIB = 2**20


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
