"""maft_plus.allocator: freed CPU memory stays in the process unless the user says otherwise.

The effect is checked in fresh processes (the setting is per process and cannot be undone) by the
page faults of a 64 MiB block allocated after a 96 MiB block was freed: by default glibc maps
every block that size anew (its threshold never rises above 32 MiB), so each page faults again;
with the setting, the 64 MiB block lies in the freed block's pages, which the process still has.
"""

import json
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from script_loader import load_script

from maft_plus import allocator

REPO = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
BLOCK_PAGES = 64 * 2**20 // 4096

PROBE = """
import importlib.util, json, resource, sys
import torch

# the module alone: importing the maft_plus package would take seconds
spec = importlib.util.spec_from_file_location("allocator", "maft_plus/allocator.py")
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)

def touched_block(megabytes):
    block = torch.empty(megabytes * 2**18)  # float32
    block.fill_(1.0)  # touch every page
    return block

applied = allocator.retain_freed_memory()
touched_block(96)  # freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touched_block(64)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults}))
"""


def probe(env_extra: dict[str, str]) -> dict:
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting exists only on glibc")
def test_a_freed_block_is_reused_without_page_faults():
    retained = probe({})
    assert retained["applied"] is True
    assert retained["faults"] < BLOCK_PAGES // 20, retained
    # glibc's defaults, through the opt-out: the same block faults again (unless transparent
    # huge pages make it a few dozen faults, still far more than none)
    returned = probe({allocator.OPT_OUT: "0"})
    assert returned["applied"] is False
    assert returned["faults"] > 10 * max(retained["faults"], 1), (returned, retained)


@pytest.mark.skipif(not GLIBC, reason="the setting exists only on glibc")
def test_a_users_own_malloc_setting_wins():
    result = probe({"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert result["applied"] is False
    assert result["faults"] > BLOCK_PAGES // 100  # glibc maps the block anew: it faults again


@pytest.mark.parametrize(
    "environ",
    [
        {allocator.OPT_OUT: "0"},
        {"MALLOC_TRIM_THRESHOLD_": "1"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
    ],
)
def test_opt_out_and_user_settings_change_nothing(environ, monkeypatch):
    monkeypatch.setattr(allocator.ctypes, "CDLL", pytest.fail)  # mallopt must not be reached
    assert allocator.retain_freed_memory(environ) is False


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(allocator.ctypes, "CDLL", pytest.fail)
    assert allocator.retain_freed_memory({}) is False


def test_a_refusing_glibc_is_reported_and_nothing_breaks(monkeypatch, caplog):
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 0

    monkeypatch.setattr(allocator.platform, "system", lambda: "Linux")
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: SimpleNamespace(mallopt=mallopt))
    assert allocator.retain_freed_memory({}) is False
    assert calls == [(-3, allocator.MMAP_THRESHOLD)]
    assert "refused" in caplog.text


class _Called(Exception):
    """Raised by the stand-in for retain_freed_memory: the entry point got that far."""


@pytest.mark.parametrize(
    "script",
    [
        "train_net.py",
        "demo/demo.py",
        "demo/web_demo.py",
        "tools/evaluate_benchmarks.py",
        "tools/evaluate_folder.py",
    ],
)
def test_every_entry_point_retains_freed_memory_first(script, monkeypatch):
    module = load_script(script)

    def stand_in():
        raise _Called

    monkeypatch.setattr(module, "retain_freed_memory", stand_in)
    monkeypatch.setattr(module, "parse_args", lambda argv: SimpleNamespace(), raising=False)
    with pytest.raises(_Called):  # before any model or data is built
        module.main(SimpleNamespace()) if script == "train_net.py" else module.main([])
