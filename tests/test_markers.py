"""The project's pytest configuration: `slow` is opt-in, `gpu` is skipped without CUDA."""

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]

EXAMPLES = """
import pytest

def test_plain():
    pass

@pytest.mark.slow
def test_long():
    pass

@pytest.mark.gpu
def test_cuda():
    pass
"""


def _project(pytester):
    pytester.makepyprojecttoml((REPO / "pyproject.toml").read_text())
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    return pytester.makepyfile(test_examples=EXAMPLES)


def test_default_run_deselects_slow_tests(pytester):
    path = _project(pytester)
    result = pytester.runpytest(str(path))
    gpu = {"passed": 2} if torch.cuda.is_available() else {"passed": 1, "skipped": 1}
    result.assert_outcomes(deselected=1, **gpu)


def test_slow_tests_run_on_request(pytester):
    path = _project(pytester)
    result = pytester.runpytest(str(path), "-m", "slow")
    result.assert_outcomes(passed=1, deselected=2)


def test_gpu_tests_are_skipped_without_cuda(pytester):
    path = _project(pytester)
    result = pytester.runpytest(str(path), "-m", "gpu", "-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1, deselected=2)
    else:
        result.assert_outcomes(skipped=1, deselected=2)
        result.stdout.fnmatch_lines(["*needs CUDA, and no GPU is visible*"])
