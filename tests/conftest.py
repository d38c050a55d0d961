"""Shared test setup: offline mode, fixed seeds, the `slow`/`gpu` markers and tiny CLIP models.

Markers (declared in pyproject.toml): `slow` tests are deselected by default (`-m 'not slow'`) and
run with `make test-slow`; `gpu` tests are skipped when CUDA is not available.
"""

import os

# Tests never download: set before open_clip / huggingface_hub read it.
os.environ["HF_HUB_OFFLINE"] = "1"

import random  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from weights_server import WeightsServer, serving  # noqa: E402

from maft_plus.modeling.backbone.tiny_clip import TINY_CLIP_NAMES  # noqa: E402

SEED = 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA, and no GPU is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


@pytest.fixture(autouse=True, scope="module")
def fixed_seeds_per_module() -> None:
    """Module-scoped fixtures (built before any test's own seeding) start from a fixed state too:
    torch seeds itself randomly at start-up, so a model they build would differ run to run."""
    seed_everything()


@pytest.fixture(autouse=True)
def fixed_seeds() -> None:
    """Every test starts from the same random state."""
    seed_everything()


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $MAFT_PLUS_CACHE, so no disk cache outlives a test."""
    cache_dir = tmp_path / "maft_plus_cache"
    monkeypatch.setenv("MAFT_PLUS_CACHE", str(cache_dir))
    monkeypatch.delenv("MAFT_PLUS_TEXT_CACHE", raising=False)
    return cache_dir


@pytest.fixture(params=TINY_CLIP_NAMES)
def tiny_clip_name(request: pytest.FixtureRequest) -> str:
    """The name of each tiny open_clip config: the Large-like (mlp head) and Base-like (linear)."""
    return request.param


@pytest.fixture
def tiny_clip(tiny_clip_name: str) -> open_clip.CLIP:
    """A tiny random-init open_clip ConvNeXt CLIP (D = 32), built offline in milliseconds."""
    return open_clip.create_model(tiny_clip_name, pretrained=None)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    """A local http server of weights files on 127.0.0.1, in a thread (tests/weights_server.py);
    test_web_demo_http.py has a ``server`` fixture of its own, the web demo's."""
    for name in ("no_proxy", "NO_PROXY"):  # never route 127.0.0.1 through a proxy
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serving() as running:
        yield running
