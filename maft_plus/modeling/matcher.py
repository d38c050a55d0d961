"""Hungarian matching of predicted (class, mask) pairs to ground-truth segments (Mask2Former).

Shapes: B batch, Q queries, K classes (K+1 logits with the void class last), N target segments of
one image, h x w the predicted masks, H x W the (padded) target masks, P sampled points.
"""

import torch
from detectron2.projects.point_rend.point_features import point_sample
from scipy.optimize import linear_sum_assignment
from torch import nn

from .set_loss_settings import RELEASED_WEIGHTS, TermWeights


def match_cost_matrix(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-cost one-to-one assignment of rows (queries) to columns (targets).

    Args:
        cost: (Q, N) cost of assigning query q to target n; finite.

    Returns:
        ``(query_indices, target_indices)``: int64 CPU tensors of length ``min(Q, N)``, as
        ``scipy.optimize.linear_sum_assignment`` gives them (query indices ascending); both empty
        when Q or N is 0.
    """
    if cost.dim() != 2:
        raise ValueError(f"cost must be a (Q, N) matrix, got shape {tuple(cost.shape)}")
    if cost.numel() == 0:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()
    cost = cost.detach().float().cpu()
    if not torch.isfinite(cost).all():
        raise ValueError("cost matrix has NaN or infinite entries; check the predicted logits")
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def pairwise_sigmoid_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid binary cross-entropy of every prediction against every target, averaged over points.

    Args:
        logits: (Q, P) mask logits at the points.
        labels: (N, P) target values in [0, 1] at the same points.

    Returns:
        (Q, N) mean over P of ``-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x))``.
    """
    # -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x).
    loss_pos = nn.functional.softplus(-logits)  # (Q, P) cost where the target is 1
    loss_neg = nn.functional.softplus(logits)  # (Q, P) cost where the target is 0
    cost = torch.einsum("qp,np->qn", loss_pos, labels)  # (Q, N)
    cost = cost + torch.einsum("qp,np->qn", loss_neg, 1.0 - labels)  # (Q, N)
    return cost / logits.shape[-1]


def pairwise_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction against every target: ``1 - (2|p t| + 1) / (|p| + |t| + 1)``.

    Args:
        logits: (Q, P) mask logits at the points (``p = sigmoid(logits)``).
        labels: (N, P) target values in [0, 1] at the same points.

    Returns:
        (Q, N) dice losses.
    """
    probs = logits.sigmoid()
    intersection = torch.einsum("qp,np->qn", probs, labels)  # (Q, N)
    sizes = probs.sum(-1)[:, None] + labels.sum(-1)[None, :]  # (Q, N)
    return 1.0 - (2.0 * intersection + 1.0) / (sizes + 1.0)


class HungarianMatcher(nn.Module):
    """One-to-one matching of queries to target segments, image by image.

    The cost of query q for target n is ``w_class * -p_q(label_n) + w_mask * BCE(q, n) +
    w_dice * dice(q, n)`` with the set loss's term weights (`TermWeights`), the class
    probability a softmax over the K+1 logits and both mask terms measured on ``num_points``
    random points (one uniform set per image, shared by predictions and targets). Computed in fp32
    and without gradient.
    """

    def __init__(self, *, weights: TermWeights = RELEASED_WEIGHTS, num_points: int = 12544):
        super().__init__()
        if weights.class_weight == 0 and weights.mask_weight == 0 and weights.dice_weight == 0:
            raise ValueError("HungarianMatcher needs at least one non-zero cost weight")
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.weights = weights
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, target: dict
    ) -> torch.Tensor:
        """The matching cost of one image.

        Args:
            class_logits: (Q, K+1) class logits.
            mask_logits: (Q, h, w) mask logits.
            target: ``labels`` (N,) int64 and ``masks`` (N, H, W) bool or float.

        Returns:
            (Q, N) fp32 cost matrix.
        """
        labels, masks = target["labels"], target["masks"]
        if masks.dim() != 3 or labels.dim() != 1 or labels.shape[0] != masks.shape[0]:
            raise ValueError(
                "each target needs 'labels' (N,) and 'masks' (N, H, W) with one N, got "
                f"{tuple(labels.shape)} and {tuple(masks.shape)}"
            )
        # The costs are compared against each other: keep them in fp32 under autocast.
        with torch.autocast(device_type=mask_logits.device.type, enabled=False):
            class_logits = class_logits.float()
            mask_logits = mask_logits.float()
            probs = class_logits.softmax(-1)  # (Q, K+1)
            cost_class = -probs[:, labels.to(class_logits.device)]  # (Q, N)

            num_queries, num_targets = mask_logits.shape[0], masks.shape[0]
            # One uniform set of points per image, shared by predictions and targets.
            coords = torch.rand(1, self.num_points, 2, device=mask_logits.device)  # (1, P, 2)
            point_logits = point_sample(
                mask_logits[:, None], coords.expand(num_queries, -1, -1), align_corners=False
            ).squeeze(1)  # (Q, P)
            target_masks = masks.to(device=mask_logits.device, dtype=torch.float32)
            point_labels = point_sample(
                target_masks[:, None], coords.expand(num_targets, -1, -1), align_corners=False
            ).squeeze(1)  # (N, P)
            cost_mask = pairwise_sigmoid_bce(point_logits, point_labels)  # (Q, N)
            cost_dice = pairwise_dice(point_logits, point_labels)  # (Q, N)
            return (
                self.weights.class_weight * cost_class
                + self.weights.mask_weight * cost_mask
                + self.weights.dice_weight * cost_dice
            )

    @torch.no_grad()
    def forward(
        self, outputs: dict, targets: list[dict]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its targets.

        Args:
            outputs: ``pred_logits`` (B, Q, K+1) class logits (void last) and ``pred_masks``
                (B, Q, h, w) mask logits.
            targets: B dicts with ``labels`` (N,) int64 and ``masks`` (N, H, W) bool or float,
                padded to the batch's input size; N may be 0.

        Returns:
            B pairs ``(query_indices, target_indices)``, int64 CPU tensors of length ``min(Q, N)``:
            query ``query_indices[i]`` is matched to target ``target_indices[i]``.
        """
        class_logits, mask_logits = outputs["pred_logits"], outputs["pred_masks"]
        if class_logits.dim() != 3 or mask_logits.dim() != 4:
            raise ValueError(
                "outputs need 'pred_logits' (B, Q, K+1) and 'pred_masks' (B, Q, h, w), got "
                f"{tuple(class_logits.shape)} and {tuple(mask_logits.shape)}"
            )
        if len(targets) != class_logits.shape[0]:
            raise ValueError(f"got {len(targets)} targets for a batch of {class_logits.shape[0]}")
        indices = []
        for image_logits, image_masks, target in zip(
            class_logits, mask_logits, targets, strict=True
        ):
            if target["labels"].numel() == 0:
                indices.append(match_cost_matrix(image_logits.new_zeros(0, 0)))
                continue
            cost = self.cost_matrix(image_logits, image_masks, target)  # (Q, N)
            indices.append(match_cost_matrix(cost))
        return indices

    def extra_repr(self) -> str:
        return f"weights={self.weights}, num_points={self.num_points}"
