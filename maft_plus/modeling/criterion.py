"""The Mask2Former set loss on matched (class, mask) predictions, with deep supervision.

Shapes: B batch, Q queries, K classes (K+1 logits with the void class last), N target segments of
one image, M matched pairs in the batch, h x w the predicted masks, H x W the (padded) target
masks, P sampled points.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from torch import nn

from .matcher import HungarianMatcher
from .set_loss_settings import RELEASED_SAMPLING, RELEASED_WEIGHTS, PointSampling, TermWeights


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits at points: ``-|logit|``, highest at the decision boundary.

    Args:
        logits: (M, 1, P) mask logits.

    Returns:
        (M, 1, P) uncertainties.
    """
    return -logits.abs()


def sigmoid_bce_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sigmoid binary cross-entropy, averaged over points, summed over masks, over ``num_masks``.

    Args:
        logits: (M, P) mask logits at the points.
        labels: (M, P) target values in [0, 1] at the same points.
        num_masks: the normalizer (target masks per process).

    Returns:
        Scalar loss.
    """
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (M, P)
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss ``1 - (2|p t| + 1) / (|p| + |t| + 1)``, summed over masks, over ``num_masks``.

    Args:
        logits: (M, P) mask logits at the points (``p = sigmoid(logits)``).
        labels: (M, P) target values in [0, 1] at the same points.
        num_masks: the normalizer (target masks per process).

    Returns:
        Scalar loss.
    """
    probs = logits.sigmoid()
    intersection = (probs * labels).sum(-1)  # (M,)
    sizes = probs.sum(-1) + labels.sum(-1)  # (M,)
    loss = 1.0 - (2.0 * intersection + 1.0) / (sizes + 1.0)  # (M,)
    return loss.sum() / num_masks


def count_masks(targets: list[dict], device: torch.device) -> float:
    """Target masks per process: the batch's count, averaged over processes, at least 1."""
    num_masks = torch.tensor(
        float(sum(len(t["labels"]) for t in targets)), dtype=torch.float32, device=device
    )
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_masks)
        num_masks = num_masks / dist.get_world_size()
    return num_masks.clamp(min=1.0).item()


class SetCriterion(nn.Module):
    """Mask2Former's loss: Hungarian-match queries to targets, then class and mask losses.

    ``loss_ce``: cross-entropy over the K+1 classes; unmatched queries target the void class K,
    whose weight is ``no_object_weight`` (the others 1). ``loss_mask`` (sigmoid BCE) and
    ``loss_dice`` on matched pairs, at the points of `PointSampling` (importance sampling of the
    predicted logits). Every loss is returned already multiplied by its weight; each
    entry of ``aux_outputs`` gets its own matching and the same losses suffixed ``_0``, ``_1``, ...
    """

    def __init__(
        self,
        *,
        matcher: HungarianMatcher,
        weights: TermWeights = RELEASED_WEIGHTS,
        no_object_weight: float = 0.1,
        sampling: PointSampling = RELEASED_SAMPLING,
    ):
        super().__init__()
        self.matcher = matcher
        self.weights = weights
        self.no_object_weight = no_object_weight
        self.sampling = sampling

    def class_loss(
        self,
        class_logits: torch.Tensor,
        targets: list[dict],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """Weighted cross-entropy of every query's class logits (unweighted by ``class_weight``).

        Args:
            class_logits: (B, Q, K+1) class logits, void last.
            targets: B dicts with ``labels`` (N,) int64.
            indices: the matcher's B pairs ``(query_indices, target_indices)``.

        Returns:
            Scalar ``sum_i w_i * CE_i / sum_i w_i`` over the B*Q queries.
        """
        class_logits = class_logits.float()
        num_classes = class_logits.shape[-1] - 1
        weight = class_logits.new_ones(num_classes + 1)  # (K+1,)
        weight[-1] = self.no_object_weight
        target_classes = torch.full(
            class_logits.shape[:2], num_classes, dtype=torch.int64, device=class_logits.device
        )  # (B, Q): void unless matched
        batch_idx, query_idx = self._matched_queries(indices, class_logits.device)
        matched_labels = torch.cat(
            [t["labels"][tgt] for t, (_, tgt) in zip(targets, indices, strict=True)]
        )  # (M,)
        target_classes[batch_idx, query_idx] = matched_labels.to(class_logits.device)
        logits = class_logits.transpose(1, 2)  # (B, K+1, Q): classes in dim 1 for cross_entropy
        return F.cross_entropy(logits, target_classes, weight)

    def mask_losses(
        self,
        mask_logits: torch.Tensor,
        targets: list[dict],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
        num_masks: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE and dice of matched masks at importance-sampled points (unweighted).

        Args:
            mask_logits: (B, Q, h, w) mask logits.
            targets: B dicts with ``masks`` (N, H, W) bool or float, one (H, W) for the batch.
            indices: the matcher's B pairs ``(query_indices, target_indices)``.
            num_masks: the normalizer (target masks per process).

        Returns:
            ``(loss_mask, loss_dice)`` scalars; zeros (still attached to ``mask_logits``) when
            nothing is matched.
        """
        batch_idx, query_idx = self._matched_queries(indices, mask_logits.device)
        if batch_idx.numel() == 0:
            zero = mask_logits.sum() * 0.0
            return zero, zero.clone()
        pred = mask_logits[batch_idx, query_idx].float()[:, None]  # (M, 1, h, w)
        target = torch.cat(
            [t["masks"][tgt] for t, (_, tgt) in zip(targets, indices, strict=True)]
        )  # (M, H, W)
        target = target.to(device=pred.device, dtype=torch.float32)[:, None]  # (M, 1, H, W)
        # Which points to supervise is a choice, not something to learn through: no gradient.
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                pred,
                logit_uncertainty,
                self.sampling.num_points,
                self.sampling.oversample_ratio,
                self.sampling.importance_sample_ratio,
            )  # (M, P, 2) in [0, 1]
            point_labels = point_sample(target, coords, align_corners=False).squeeze(1)  # (M, P)
        point_logits = point_sample(pred, coords, align_corners=False).squeeze(1)  # (M, P)
        return (
            sigmoid_bce_loss(point_logits, point_labels, num_masks),
            dice_loss(point_logits, point_labels, num_masks),
        )

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """The weighted losses of the final outputs and of every auxiliary output.

        Args:
            outputs: ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, h, w) and optionally
                ``aux_outputs``, a list of dicts with the same two keys.
            targets: B dicts with ``labels`` (N,) int64 in [0, K) and ``masks`` (N, H, W) bool or
                float, padded to the batch's input size; N may be 0.

        Returns:
            ``loss_ce``, ``loss_mask``, ``loss_dice`` and, for the i-th auxiliary output,
            ``loss_ce_i``, ``loss_mask_i``, ``loss_dice_i``; each already multiplied by its weight.
        """
        self._check_targets(outputs, targets)
        num_masks = count_masks(targets, outputs["pred_logits"].device)
        losses = self._losses(outputs, targets, num_masks, suffix="")
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._losses(aux, targets, num_masks, suffix=f"_{i}"))
        return losses

    def _losses(
        self, outputs: dict, targets: list[dict], num_masks: float, suffix: str
    ) -> dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        # fp32 losses under autocast: the mask terms average many small point-wise values.
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            loss_ce = self.class_loss(outputs["pred_logits"], targets, indices)
            loss_mask, loss_dice = self.mask_losses(
                outputs["pred_masks"], targets, indices, num_masks
            )
        return {
            f"loss_ce{suffix}": self.weights.class_weight * loss_ce,
            f"loss_mask{suffix}": self.weights.mask_weight * loss_mask,
            f"loss_dice{suffix}": self.weights.dice_weight * loss_dice,
        }

    @staticmethod
    def _matched_queries(
        indices: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) image index and (M,) query index of every matched pair in the batch."""
        batch_idx = torch.cat(
            [torch.full_like(query, i) for i, (query, _) in enumerate(indices)]
        )  # (M,)
        query_idx = torch.cat([query for query, _ in indices])  # (M,)
        return batch_idx.to(device), query_idx.to(device)

    @staticmethod
    def _check_targets(outputs: dict, targets: list[dict]) -> None:
        num_classes = outputs["pred_logits"].shape[-1] - 1
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(
                f"got {len(targets)} targets for a batch of {outputs['pred_logits'].shape[0]}"
            )
        sizes = {tuple(t["masks"].shape[-2:]) for t in targets}
        if len(sizes) > 1:
            raise ValueError(
                f"target masks must be padded to one (H, W) per batch, got sizes {sorted(sizes)}"
            )
        labels = torch.cat([t["labels"] for t in targets])  # (sum N,)
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"target labels must be in [0, {num_classes}) for {num_classes + 1} class logits, "
                f"got values in [{labels.min().item()}, {labels.max().item()}]"
            )

    def extra_repr(self) -> str:
        return (
            f"weights={self.weights}, no_object_weight={self.no_object_weight}, "
            f"sampling={self.sampling}"
        )
