"""Fixtures for whole-model tests: the tiny MAFT+ built from configs/tiny/maftp_tiny.yaml."""

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from maft_plus.config import setup_cfg

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "maftp_tiny.yaml"
VOCABULARY = ["cat, kitty", "dog", "sky, heaven", "grass"]


def build_tiny_model(*opts: str) -> torch.nn.Module:
    """A tiny random-init MAFTPlus in eval mode with VOCABULARY set."""
    model = build_model(setup_cfg(str(TINY_CONFIG), opts)).eval()
    model.set_vocabulary(VOCABULARY, is_thing=[True, True, False, False])
    return model


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    return build_tiny_model()


@pytest.fixture
def tiny_model_factory():
    """build_tiny_model, for tests that need config overrides."""
    return build_tiny_model


@pytest.fixture
def vocabulary() -> list[str]:
    """The class names the tiny model is built with (classes 0, 1 things; 2, 3 stuff)."""
    return list(VOCABULARY)


@pytest.fixture
def tiny_inputs() -> list[dict]:
    """Two RGB images of different sizes; the second asks for a larger output size."""
    return [
        {"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)},
        {"image": torch.rand(3, 48, 64) * 255, "height": 96, "width": 128},
    ]
