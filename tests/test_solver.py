"""The optimizer recipe: parameter groups, full-model clipping, poly schedule."""

import pytest
import torch
from torch import nn

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus
from maft_plus.solver import build_lr_scheduler, build_optimizer, optimizer_param_groups

TINY = "configs/tiny/maftp_tiny.yaml"


@pytest.fixture
def model():
    return MAFTPlus(setup_cfg(TINY), training=True)


def group_of(groups: list[dict], param: nn.Parameter) -> dict:
    (group,) = [g for g in groups if any(p is param for p in g["params"])]
    return group


def test_groups_follow_the_recipe(model):
    cfg = setup_cfg(
        TINY,
        [
            "SOLVER.BASE_LR",
            "0.5",
            "SOLVER.WEIGHT_DECAY",
            "0.05",
            "MODEL.MAFT_PLUS.SOLVER.BACKBONE_MULTIPLIER",
            "0.1",
        ],
    )
    groups = optimizer_param_groups(cfg, model)
    trunk = model.backbone.clip_model.visual.trunk
    conv = trunk.stages[0].blocks[0].conv_dw.weight
    assert group_of(groups, conv) == {
        "params": [conv],
        "lr": pytest.approx(0.05),
        "weight_decay": 0.05,
    }
    norm = model.sem_seg_head.predictor.decoder_norm.weight
    assert group_of(groups, norm)["weight_decay"] == 0.0 and group_of(groups, norm)["lr"] == 0.5
    assert group_of(groups, model.void_embedding.weight)["weight_decay"] == 0.0
    assert group_of(groups, model.sem_seg_head.predictor.query_feat.weight)["weight_decay"] == 0.0
    linear = model.cdt.layers[0].proj.weight
    assert group_of(groups, linear)["weight_decay"] == 0.05
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert len(in_groups) == sum(len(g["params"]) for g in groups)  # no parameter twice
    frozen = [model.backbone.clip_model.token_embedding.weight, *model.teacher.parameters()]
    assert not any(id(p) in in_groups for p in frozen)
    assert {id(p) for p in model.parameters() if p.requires_grad} == in_groups


def test_full_model_clipping_bounds_the_total_gradient_norm():
    cfg = setup_cfg(
        TINY,
        [
            "SOLVER.CLIP_GRADIENTS.ENABLED",
            "True",
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
            "full_model",
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE",
            "0.01",
            "SOLVER.BASE_LR",
            "1.0",
            "SOLVER.WEIGHT_DECAY",
            "0.0",
        ],
    )
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = build_optimizer(cfg, net)
    net(torch.randn(5, 3)).pow(2).sum().mul(1000).backward()
    optimizer.step()
    total = torch.norm(torch.stack([p.grad.norm() for p in net.parameters()]))
    assert total.item() == pytest.approx(0.01, rel=1e-4)


def test_other_clip_types_are_rejected():
    cfg = setup_cfg(
        TINY, ["SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "value"]
    )
    with pytest.raises(ValueError, match="full_model"):
        build_optimizer(cfg, nn.Linear(2, 2))


def test_poly_schedule_values_by_hand():
    cfg = setup_cfg(
        TINY,
        [
            "SOLVER.LR_SCHEDULER_NAME",
            "WarmupPolyLR",
            "SOLVER.MAX_ITER",
            "10",
            "SOLVER.WARMUP_ITERS",
            "0",
            "SOLVER.BASE_LR",
            "1.0",
        ],
    )
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [(1 - i / 10) ** 0.9 for i in range(10)]
    assert lrs == pytest.approx(expected)
