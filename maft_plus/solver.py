"""Optimizer and learning-rate schedule of the MAFT+ recipe (design.md section 7).

AdamW with CLIP-V's trainable stages at ``BACKBONE_MULTIPLIER`` times the base rate, no weight
decay on normalization layers and embeddings, optional gradient-norm clipping over the whole
model at once (``SOLVER.CLIP_GRADIENTS.CLIP_TYPE: "full_model"``), and a poly schedule.
"""

import itertools
import logging

import torch
from detectron2.config import CfgNode
from detectron2.solver import build_lr_scheduler as build_d2_lr_scheduler
from detectron2.solver.lr_scheduler import LRMultiplier, WarmupParamScheduler
from fvcore.common.param_scheduler import PolynomialDecayParamScheduler
from torch import nn

logger = logging.getLogger(__name__)

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
POLY_SCHEDULER = "WarmupPolyLR"


def optimizer_param_groups(cfg: CfgNode, model: nn.Module) -> list[dict]:
    """One group per trainable parameter with its learning rate and weight decay."""
    solver = cfg.MODEL.MAFT_PLUS.SOLVER
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, weight_decay = cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY
            if module_name.startswith("backbone."):
                lr *= solver.BACKBONE_MULTIPLIER
            if isinstance(module, NORM_TYPES):
                weight_decay = solver.WEIGHT_DECAY_NORM
            elif isinstance(module, nn.Embedding):
                weight_decay = solver.WEIGHT_DECAY_EMBED
            groups.append({"params": [param], "lr": lr, "weight_decay": weight_decay})
    return groups


def full_model_clipping(optimizer_class: type, clip_value: float, norm_type: float) -> type:
    """A subclass of ``optimizer_class`` whose step first clips the gradient norm of all groups."""

    class FullModelGradientClipping(optimizer_class):
        def step(self, closure=None):
            params = itertools.chain(*(group["params"] for group in self.param_groups))
            torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = f"{optimizer_class.__name__}WithFullModelClipping"
    return FullModelGradientClipping


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW over ``optimizer_param_groups``, with full-model gradient clipping if configured."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    optimizer_class = torch.optim.AdamW
    if clip.ENABLED:
        if clip.CLIP_TYPE != "full_model":
            raise ValueError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip.CLIP_TYPE!r} is not supported by MAFT+'s "
                "optimizer; use 'full_model' (the released recipe) or disable clipping"
            )
        optimizer_class = full_model_clipping(optimizer_class, clip.CLIP_VALUE, clip.NORM_TYPE)
    groups = optimizer_param_groups(cfg, model)
    num_params = sum(p.numel() for g in groups for p in g["params"])
    logger.info("optimizer: %s over %d trainable parameters", optimizer_class.__name__, num_params)
    return optimizer_class(groups, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer):
    """``WarmupPolyLR``: lr = base * (1 - iter / MAX_ITER) ** POLY_POWER after linear warmup;
    any other ``SOLVER.LR_SCHEDULER_NAME`` goes to detectron2."""
    if cfg.SOLVER.LR_SCHEDULER_NAME != POLY_SCHEDULER:
        return build_d2_lr_scheduler(cfg, optimizer)
    poly = PolynomialDecayParamScheduler(1.0, cfg.MODEL.MAFT_PLUS.SOLVER.POLY_POWER)
    scheduler = WarmupParamScheduler(
        poly,
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / cfg.SOLVER.MAX_ITER, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
    )
    return LRMultiplier(optimizer, multiplier=scheduler, max_iter=cfg.SOLVER.MAX_ITER)
