"""The tools are scripts whose helpers are their sibling modules (tools/benchmark_*.py): run as a
script, a tool has its folder on the import path, so every test here puts it there too."""

from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(autouse=True)
def tools_on_the_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
