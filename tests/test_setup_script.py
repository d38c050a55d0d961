"""scripts/setup.sh reports what is missing clearly and is a fast no-op when up to date."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def run_setup(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SETUP), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_python(tmp_path: Path, version: str) -> Path:
    """An executable that answers the version query like a Python of `version` would."""
    exe = tmp_path / f"python{version}"
    exe.write_text(f"#!/bin/sh\necho {version}\n")
    exe.chmod(0o755)
    return exe


def test_unsupported_python_version_is_named(tmp_path):
    result = run_setup("--venv", str(tmp_path / "venv"), PYTHON=str(fake_python(tmp_path, "3.8")))
    assert result.returncode == 1
    assert "is Python 3.8" in result.stderr
    assert "needs Python 3.11 to 3.12" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_interpreter_that_does_not_run_is_named(tmp_path):
    missing = tmp_path / "no-such-python"
    result = run_setup("--venv", str(tmp_path / "venv"), PYTHON=str(missing))
    assert result.returncode == 1
    assert f"PYTHON={missing} cannot be run" in result.stderr


def test_unreachable_package_index_is_reported(tmp_path):
    index = "http://127.0.0.1:9/simple/"  # loopback port 9 (discard): nothing listens
    result = run_setup("--venv", str(tmp_path / "venv"), PYTHON=sys.executable, PIP_INDEX_URL=index)
    assert result.returncode == 1
    assert f"cannot reach the package index {index}" in result.stderr
    assert "PIP_INDEX_URL" in result.stderr
    assert not (tmp_path / "venv").exists()  # nothing half-built is left behind


def test_unknown_argument_is_rejected():
    result = run_setup("--frobnicate")
    assert result.returncode == 2
    assert "unknown argument '--frobnicate'" in result.stderr


def test_help_lists_the_options():
    result = run_setup("--help")
    assert result.returncode == 0
    for option in ("--venv DIR", "--use-current-env", "--quiet"):
        assert option in result.stdout


@pytest.mark.skipif(
    not (Path(sys.prefix) / ".maft_plus_setup").exists(),
    reason="tests are not running in an environment made by scripts/setup.sh",
)
def test_second_run_is_a_no_op():
    stamp = Path(sys.prefix) / ".maft_plus_setup"
    before = stamp.stat().st_mtime_ns
    # With an unreachable index, success proves that nothing was fetched.
    result = run_setup("--venv", sys.prefix, PIP_INDEX_URL="http://127.0.0.1:9/simple/")
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout
    assert stamp.stat().st_mtime_ns == before
