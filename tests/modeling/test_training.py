"""MAFTPlus training: the losses, where their gradients go, and the frozen teacher."""

import pytest
import torch
from detectron2.structures import Instances

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus

from .conftest import TINY_CONFIG, VOCABULARY

PROPOSAL_LOSSES = ("loss_ce", "loss_mask", "loss_dice")


def training_model(*opts: str) -> MAFTPlus:
    model = MAFTPlus(setup_cfg(str(TINY_CONFIG), opts), training=True).train()
    model.set_vocabulary(VOCABULARY)
    return model


def batch() -> list[dict]:
    """Two 64x64 images; the second has no segment of class 1 and a smaller size."""
    inputs = []
    for height, width, labels in ((64, 64, [0, 1, 2]), (48, 64, [3, 0])):
        masks = torch.zeros(len(labels), height, width, dtype=torch.bool)
        for i in range(len(labels)):
            masks[i, i * 12 : i * 12 + 20, i * 10 : i * 10 + 30] = True
        instances = Instances((height, width))
        instances.gt_classes = torch.tensor(labels)
        instances.gt_masks = masks
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        inputs.append({"image": image, "instances": instances})
    return inputs


@pytest.fixture
def model_and_losses():
    model = training_model()
    return model, model(batch())


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def has_grad(module: torch.nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def test_loss_keys_and_values(model_and_losses):
    _, losses = model_and_losses
    expected = {*PROPOSAL_LOSSES, "loss_ma", "loss_rc"}
    expected |= {f"{k}_{i}" for k in PROPOSAL_LOSSES for i in range(2)}  # 2 decoder layers
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())


def test_proposal_losses_do_not_train_clip(model_and_losses):
    model, losses = model_and_losses
    sum(v for k, v in losses.items() if k.startswith(PROPOSAL_LOSSES)).backward()
    assert not has_grad(model.backbone)
    assert not has_grad(model.cdt)
    assert has_grad(model.sem_seg_head.pixel_decoder) and has_grad(model.sem_seg_head.predictor)


def test_cdt_learns_only_from_the_mask_aware_loss(model_and_losses):
    model, losses = model_and_losses
    others = sum(v for k, v in losses.items() if k != "loss_ma")
    others.backward(retain_graph=True)
    assert not has_grad(model.cdt)
    losses["loss_ma"].backward()
    assert has_grad(model.cdt)
    assert has_grad(model.backbone.clip_model.visual.trunk)  # through V and CDT's tokens


def test_void_embedding_learns_from_the_class_loss_only(model_and_losses):
    model, losses = model_and_losses
    (losses["loss_ma"] + losses["loss_rc"]).backward(retain_graph=True)
    assert not has_grad(model.void_embedding)
    losses["loss_ce"].backward()
    assert has_grad(model.void_embedding)


def test_teacher_and_text_tower_get_no_gradient(model_and_losses):
    model, losses = model_and_losses
    sum(losses.values()).backward()
    assert all(g is None for g in grads(model.teacher))
    clip = model.backbone.clip_model
    for module in (clip.token_embedding, clip.transformer, clip.ln_final):
        assert all(g is None for g in grads(module))
    assert clip.text_projection.grad is None and clip.logit_scale.grad is None
    assert has_grad(clip.visual.trunk.stages[0])  # L_rc and L_ma train CLIP-V


def test_rc_is_zero_before_any_update(model_and_losses):
    _, losses = model_and_losses  # the teacher is a copy of the initial student trunk
    assert losses["loss_rc"].item() == pytest.approx(0.0, abs=1e-12)


def test_teacher_stays_in_eval_mode_and_out_of_checkpoints():
    model = training_model()
    model.train()
    assert model.training and not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())
    state = model.state_dict()
    assert not any(k.startswith("teacher.") for k in state)
    model.load_state_dict(state)  # strict: the teacher's keys are not reported missing


def test_frozen_stages_are_not_trained():
    model = training_model("MODEL.MAFT_PLUS.CLIP_TRAINABLE_STAGES", "[2, 3]")
    trunk = model.backbone.clip_model.visual.trunk
    assert not any(p.requires_grad for p in trunk.stem.parameters())
    assert not any(p.requires_grad for m in trunk.stages[:2] for p in m.parameters())
    assert all(p.requires_grad for m in trunk.stages[2:] for p in m.parameters())
    sum(model(batch()).values()).backward()
    assert all(p.grad is None for p in trunk.stages[0].parameters())


def test_without_rc_there_is_no_teacher_and_no_cdt_means_plain_text():
    model = training_model(
        "MODEL.MAFT_PLUS.LOSS.RC_WEIGHT", "0.0", "MODEL.MAFT_PLUS.CDT.NUM_LAYERS", "0"
    )
    assert model.teacher is None and model.cdt is None
    assert set(model(batch())) >= {"loss_ma", "loss_ce"} and "loss_rc" not in model(batch())


def test_training_needs_instances():
    model = training_model()
    with pytest.raises(ValueError, match=r"batched_inputs\[0\] has no 'instances'"):
        model([{"image": torch.zeros(3, 32, 32)}])


def test_inference_model_refuses_to_train(tiny_model, tiny_inputs):
    with pytest.raises(RuntimeError, match="built for inference"):
        tiny_model.train()(tiny_inputs)


def test_mlp_adapter_learns_only_from_the_mask_aware_loss():
    model = training_model("MODEL.MAFT_PLUS.CDT.TYPE", "mlp")
    losses = model(batch())
    sum(v for k, v in losses.items() if k != "loss_ma").backward(retain_graph=True)
    assert not has_grad(model.cdt)
    losses["loss_ma"].backward()
    assert has_grad(model.cdt)
