"""MAFTPlusObjective: every MAFT+ training loss and its weight (design.md section 7).

Shapes: B batch, Q queries, K classes, C channels of F3, h x w F3's size.

- The proposal generator's Mask2Former set loss on the in-vocabulary outputs (``loss_ce``,
  ``loss_mask``, ``loss_dice`` and, with deep supervision, ``loss_*_i`` for earlier layers).
- ``loss_ma``: the mask-aware loss on the out-of-vocabulary class scores (paper eq. 6).
- ``loss_rc``: Representation Compensation between the student's and the frozen teacher's F3.
"""

from collections.abc import Sequence

import torch
from detectron2.config import configurable
from torch import nn

from .criterion import SetCriterion
from .losses import mask_aware_loss, representation_compensation_loss
from .matcher import HungarianMatcher
from .set_loss_settings import PointSampling, TermWeights


class MAFTPlusObjective(nn.Module):
    """Computes the weighted training losses from MAFTPlus's outputs and targets."""

    @configurable
    def __init__(
        self,
        *,
        set_criterion: SetCriterion,
        deep_supervision: bool,
        ma_weight: float,
        ma_best_instance: bool,
        rc_weight: float,
        rc_variant: str,
        rc_scales: Sequence[int],
    ) -> None:
        super().__init__()
        self.set_criterion = set_criterion
        self.deep_supervision = deep_supervision
        self.ma_weight = ma_weight
        self.ma_best_instance = ma_best_instance
        self.rc_weight = rc_weight
        self.rc_variant = rc_variant
        self.rc_scales = tuple(rc_scales)

    @classmethod
    def from_config(cls, cfg):
        loss = cfg.MODEL.MAFT_PLUS.LOSS
        weights = TermWeights(loss.CLASS_WEIGHT, loss.MASK_WEIGHT, loss.DICE_WEIGHT)
        sampling = PointSampling(
            loss.NUM_POINTS, loss.OVERSAMPLE_RATIO, loss.IMPORTANCE_SAMPLE_RATIO
        )
        return {
            "set_criterion": SetCriterion(
                matcher=HungarianMatcher(weights=weights, num_points=sampling.num_points),
                weights=weights,
                no_object_weight=loss.NO_OBJECT_WEIGHT,
                sampling=sampling,
            ),
            "deep_supervision": loss.DEEP_SUPERVISION,
            "ma_weight": loss.MA_WEIGHT,
            "ma_best_instance": loss.MA_BEST_INSTANCE,
            "rc_weight": loss.RC_WEIGHT,
            "rc_variant": loss.RC_VARIANT,
            "rc_scales": loss.RC_SCALES,
        }

    @property
    def needs_teacher(self) -> bool:
        return self.rc_weight > 0

    def forward(
        self,
        outputs: dict,
        targets: list[dict],
        student_dense: torch.Tensor,
        teacher_dense: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Weighted losses.

        Args:
            outputs: ``in_vocab_logits`` (B, Q, K+1), ``out_vocab_logits`` (B, Q, K+1),
                ``pred_masks`` (B, Q, H/4, W/4) and ``aux_outputs`` (earlier decoder predictions).
            targets: per image ``labels`` (N,) and binary ``masks`` (N, H, W) at the padded size.
            student_dense: (B, C, h, w) the student's F3 (with gradient).
            teacher_dense: (B, C, h, w) the frozen teacher's F3, or None when L_rc is off.

        Returns:
            ``loss_*`` tensors, already multiplied by their weights.
        """
        proposals = {"pred_logits": outputs["in_vocab_logits"], "pred_masks": outputs["pred_masks"]}
        if self.deep_supervision:
            proposals["aux_outputs"] = outputs["aux_outputs"]
        losses = self.set_criterion(proposals, targets)
        if self.ma_weight > 0:
            losses["loss_ma"] = self.ma_weight * mask_aware_loss(
                outputs["out_vocab_logits"],
                outputs["pred_masks"],
                targets,
                best_instance=self.ma_best_instance,
            )
        if self.rc_weight > 0:
            if teacher_dense is None:
                raise ValueError("L_rc is enabled (LOSS.RC_WEIGHT > 0) but no teacher F3 was given")
            losses["loss_rc"] = self.rc_weight * representation_compensation_loss(
                student_dense, teacher_dense, variant=self.rc_variant, scales=self.rc_scales
            )
        return losses
