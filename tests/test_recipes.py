"""Each training recipe builds the model its paper row describes (checked at tiny size)."""

from pathlib import Path

import pytest

from maft_plus.config import setup_cfg
from maft_plus.modeling import MAFTPlus
from maft_plus.modeling.cdt import ContentDependentTransfer
from maft_plus.modeling.text_mlp_adapter import TextMLPAdapter

REPO = Path(__file__).resolve().parents[1]
# Shrink any recipe to the tiny model; everything else comes from the recipe itself.
TINY = [
    *("MODEL.MAFT_PLUS.CLIP_MODEL_NAME", "maftp-tiny-convnext-mlp"),
    *("MODEL.MAFT_PLUS.CLIP_PRETRAINED", ""),
    *(
        "MODEL.MAFT_PLUS.PIXEL_DECODER.CONV_DIM",
        "32",
        "MODEL.MAFT_PLUS.PIXEL_DECODER.MASK_DIM",
        "32",
    ),
    *("MODEL.MAFT_PLUS.PIXEL_DECODER.NUM_GROUPS", "8", "MODEL.MAFT_PLUS.DECODER.HIDDEN_DIM", "32"),
    *("MODEL.MAFT_PLUS.CDT.NUM_HEADS", "4", "MODEL.DEVICE", "cpu"),
]


def build(config: str):
    cfg = setup_cfg(str(REPO / "configs" / config), TINY)
    return cfg, MAFTPlus(cfg, training=True)


def clip_trainable(model) -> bool:
    return any(p.requires_grad for p in model.backbone.parameters())


def test_released_semantic_recipe():
    cfg, model = build("semantic/maftp_l_train.yaml")
    assert isinstance(model.cdt, ContentDependentTransfer) and len(model.cdt.layers) == 1
    assert model.token_layout == "legacy" and model.teacher is not None and clip_trainable(model)
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.IMS_PER_BATCH) == (
        55000,
        2e-5,
        8,
    )
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01 and cfg.SOLVER.AMP.ENABLED
    assert model.objective.rc_variant == "released" and model.objective.rc_weight == 0.1


def test_base_recipe_runs_60k():
    cfg, _ = build("semantic/maftp_b_train.yaml")
    assert cfg.SOLVER.MAX_ITER == 60000
    assert (
        setup_cfg(str(REPO / "configs/semantic/maftp_b_train.yaml")).MODEL.MAFT_PLUS.CLIP_MODEL_NAME
        == "convnext_base_w_320"
    )


def test_paper_recipe():
    cfg, model = build("semantic/maftp_l_paper.yaml")
    assert len(model.cdt.layers) == 2 and model.token_layout == "per_pixel"
    assert model.objective.rc_variant == "paper"
    assert (cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.MAX_ITER) == (0.05, 60000)
    assert cfg.INPUT.CROP.ENABLED and tuple(cfg.INPUT.CROP.SIZE) == (1024, 1024)


def test_panoptic_recipe():
    cfg, model = build("panoptic/maftp_l_pano_train.yaml")
    assert model.cdt.layers[0].residual == "branch_norm"
    assert model.objective.ma_best_instance and model.tasks.panoptic
    assert cfg.DATASETS.TRAIN == ("maftp_coco_panoptic_train",)


@pytest.mark.parametrize(
    ("config", "cdt", "teacher", "trainable"),
    [
        ("ablations/t3_frozen_clip.yaml", None, False, False),
        ("ablations/t3_cdt.yaml", ContentDependentTransfer, False, False),
        ("ablations/t3_rc.yaml", None, True, True),
        ("ablations/t3_finetune_only.yaml", None, False, True),
        ("ablations/t4_mlp.yaml", TextMLPAdapter, True, True),
    ],
)
def test_component_ablations(config, cdt, teacher, trainable):
    _, model = build(config)
    assert (type(model.cdt) if cdt else model.cdt) == cdt
    assert (model.teacher is not None) == teacher
    assert clip_trainable(model) == trainable


@pytest.mark.parametrize(("suffix", "stages"), [("123", (1, 2, 3)), ("23", (2, 3)), ("3", (3,))])
def test_stage_ablations(suffix, stages):
    _, model = build(f"ablations/t5a_train_stages_{suffix}.yaml")
    assert model.backbone.trainable_stages == stages
    trunk = model.backbone.clip_model.visual.trunk
    for i, stage in enumerate(trunk.stages):
        assert all(p.requires_grad == (i in stages) for p in stage.parameters())


@pytest.mark.parametrize(
    ("suffix", "scales"), [("1", (1,)), ("12", (1, 2)), ("1248", (1, 2, 4, 8))]
)
def test_pooling_grid_ablations(suffix, scales):
    _, model = build(f"ablations/t5b_rc_grid_{suffix}.yaml")
    assert model.objective.rc_scales == scales
