"""Pinned outputs of whole models, so that moving code (refactors) provably changes no number.

For the tiny model and a Base-size model (convnext_base_w_320 with seeded random weights) on fixed
inputs: the default semantic labels, the dense semantic scores (4 x 4 averages per class), the
panoptic segments, the instances and every training loss (the student CLIP-V nudged off the
teacher, so that L_rc is not zero), compared with ``regression_pins.json``. A change that is meant
to change numbers regenerates the file, and says so in its commit:

    MAFT_PLUS_UPDATE_PINS=1 python -m pytest tests/modeling/test_regression_pins.py -m ""

Tolerances cover the rounding differences between this project's CPUs; segment ids and labels
must match exactly.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from detectron2.structures import Instances

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus

from .conftest import TINY_CONFIG

PINS = Path(__file__).with_name("regression_pins.json")
UPDATE = os.environ.get("MAFT_PLUS_UPDATE_PINS") == "1"
VOCABULARY = ["cat, kitty", "dog", "sky, heaven", "grass, lawn", "road"]
IS_THING = [True, True, False, False, False]
BASE = (
    "MODEL.MAFT_PLUS.CLIP_MODEL_NAME",
    "convnext_base_w_320",
    "MODEL.MAFT_PLUS.CLIP_PRETRAINED",
    "",
    "MODEL.MAFT_PLUS.DECODER.NUM_QUERIES",
    "20",
    "MODEL.MAFT_PLUS.LOSS.RC_SCALES",
    "[1, 2]",
    "INPUT.MIN_SIZE_TEST",
    "96",
)
MODELS = {"tiny": (), "base": BASE}


def build(name: str, training: bool, *opts: str) -> MAFTPlus:
    """The model ``name`` with seeded random weights and VOCABULARY."""
    torch.manual_seed(1234)
    cfg = setup_cfg(str(TINY_CONFIG), [*MODELS[name], *opts])
    model = MAFTPlus(cfg, training=training).train(training)
    model.set_vocabulary(VOCABULARY, is_thing=IS_THING)
    return model


def images(name: str) -> list[dict]:
    """Two smooth images with a few shapes (not noise, so masks and classes differ)."""
    generator = torch.Generator().manual_seed(7)
    size = 96 if name == "base" else 64
    out = []
    for height, width in ((size, size + 16), (size - 16, size)):
        y = torch.linspace(0, 1, height)[:, None].expand(height, width)  # (H, W)
        x = torch.linspace(0, 1, width)[None, :].expand(height, width)  # (H, W)
        base = torch.stack([y * 200 + 20, x * 180 + 30, (x + y) * 90 + 40])  # (3, H, W)
        noise = torch.rand(3, height, width, generator=generator) * 30
        image = base + noise
        image[:, height // 4 : height // 2, width // 5 : width // 2] = torch.tensor(
            [230.0, 40.0, 60.0]
        )[:, None, None]
        out.append({"image": image.clamp(0, 255)})
    out[1].update(height=out[1]["image"].shape[1] * 3 // 2, width=out[1]["image"].shape[2] * 3 // 2)
    return out


def targets(name: str) -> list[dict]:
    """The images as uint8, with two or three ground-truth segments each, for the losses."""
    inputs = []
    for i, sample in enumerate(images(name)):
        image = sample["image"].round().to(torch.uint8)  # (3, H, W)
        _, height, width = image.shape
        labels = [0, 2, 3] if i == 0 else [1, 4]
        masks = torch.zeros(len(labels), height, width, dtype=torch.bool)
        for k in range(len(labels)):
            top, left = k * height // 4, k * 7
            masks[k, top : top + height // 2, left : left + width // 2] = True
        instances = Instances((height, width))
        instances.gt_classes = torch.tensor(labels)
        instances.gt_masks = masks
        inputs.append({"image": image, "instances": instances})
    return inputs


def summary(name: str) -> dict:
    """Every pinned quantity of model ``name``, as plain numbers."""
    out: dict = {}
    with torch.no_grad():
        labels = build(name, False)(images(name))
        out["sem_seg_labels"] = [
            torch.bincount(r["sem_seg_labels"].flatten(), minlength=len(VOCABULARY)).tolist()
            for r in labels
        ]
        out["sem_seg_confidence"] = [r["sem_seg_confidence"].sum().item() for r in labels]
        every_task = (
            *("MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "scores"),
            *(
                "MODEL.MAFT_PLUS.TEST.PANOPTIC_ON",
                "True",
                "MODEL.MAFT_PLUS.TEST.INSTANCE_ON",
                "True",
            ),
        )
        results = build(name, False, *every_task)(images(name))
    out["sem_seg_scores"] = [
        F.adaptive_avg_pool2d(r["sem_seg"], 4).flatten().tolist()
        for r in results  # (K*16,)
    ]
    out["panoptic"], out["instances"] = [], []
    for result in results:
        ids, segments = result["panoptic_seg"]
        out["panoptic"].append(
            [
                [s["id"], s["category_id"], bool(s["isthing"]), int((ids == s["id"]).sum())]
                for s in segments
            ]
        )
        instances = result["instances"]
        top = instances.scores.argsort(descending=True)[:10]
        out["instances"].append(
            {
                "classes": instances.pred_classes[top].tolist(),
                "scores": instances.scores[top].tolist(),
                "areas": instances.pred_masks[top].flatten(1).sum(1).tolist(),
            }
        )
    model = build(name, True)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # the student trunk off the frozen teacher's weights
        for parameter in model.backbone.clip_model.visual.trunk.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    torch.manual_seed(99)  # the losses sample points at random
    losses = model(targets(name))
    out["losses"] = {key: value.item() for key, value in sorted(losses.items())}
    return out


def assert_close(ours, pinned, where: str) -> None:
    if isinstance(pinned, dict):
        assert set(ours) == set(pinned), where
        for key in pinned:
            assert_close(ours[key], pinned[key], f"{where}.{key}")
    elif isinstance(pinned, list):
        assert len(ours) == len(pinned), where
        for k, (a, b) in enumerate(zip(ours, pinned, strict=True)):
            assert_close(a, b, f"{where}[{k}]")
    elif isinstance(pinned, float):
        assert ours == pytest.approx(pinned, rel=1e-4, abs=1e-5), where
    else:
        assert ours == pinned, where


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_match_the_pins(name):
    ours = json.loads(json.dumps(summary(name)))  # the same types as read back
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    if UPDATE:
        PINS.write_text(json.dumps({**pins, name: ours}, indent=1) + "\n")
        pytest.skip(f"wrote the pins of {name} to {PINS}")
    assert name in pins, f"no pins for {name}: regenerate them (see the module docstring)"
    assert_close(ours, pins[name], name)
