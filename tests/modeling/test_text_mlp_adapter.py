"""The MLP text adapter of the "MLP instead of CDT" ablation."""

import pytest
import torch

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus
from maft_plus.modeling.text_mlp_adapter import TextMLPAdapter

from .conftest import TINY_CONFIG


def test_branch_norm_starts_as_identity():
    text = torch.randn(2, 5, 16)
    assert torch.equal(TextMLPAdapter(embed_dim=16, residual="branch_norm")(text), text)


def test_post_norm_rows_are_layer_normalized_and_independent():
    adapter = TextMLPAdapter(embed_dim=16)
    text = torch.randn(1, 5, 16)
    out = adapter(text)
    torch.testing.assert_close(out.mean(-1), torch.zeros(1, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(adapter(text[:, [3, 1]]), out[:, [3, 1]])


def test_unknown_residual_is_rejected():
    with pytest.raises(ValueError, match="residual must be one of"):
        TextMLPAdapter(embed_dim=16, residual="pre_norm")


def test_model_with_the_mlp_adapter_ignores_image_content_in_the_text(tiny_inputs, vocabulary):
    cfg = setup_cfg(str(TINY_CONFIG), ["MODEL.MAFT_PLUS.CDT.TYPE", "mlp"])
    model = MAFTPlus(cfg).eval()
    model.set_vocabulary(vocabulary)
    assert isinstance(model.cdt, TextMLPAdapter)
    with torch.no_grad():
        results = model(tiny_inputs)
    assert results[0]["sem_seg_labels"].shape == (64, 80)


def test_unknown_cdt_type_is_rejected():
    cfg = setup_cfg(str(TINY_CONFIG), ["MODEL.MAFT_PLUS.CDT.TYPE", "transformer"])
    with pytest.raises(ValueError, match="CDT.TYPE must be 'cross_attention' or 'mlp'"):
        MAFTPlus(cfg)
