"""Representation compensation loss L_rc: pooled descriptors of the fine-tuned CLIP-V map follow
those of a frozen teacher copy.

Two variants (design.md sections 7 and 9): ``"released"`` (the released code, the default) and
``"paper"``.

Shapes: B batch, C channels, h x w the feature map, h' x w' a pooled grid, L descriptor length.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

VARIANTS = ("released", "paper")


def _released_descriptor(features: torch.Tensor, scales: Sequence[int]) -> torch.Tensor:
    width = features.shape[-1]  # the ORIGINAL width sets the kernels, even after a resize
    if any(width // s < 1 for s in scales):
        raise ValueError(
            f"the released L_rc pools with kernels width // scale, so every scale must be <= the "
            f"feature width {width}; got scales {tuple(scales)}"
        )
    features = features.relu()
    side = max(features.shape[-2:])
    if features.shape[-2] != features.shape[-1]:
        features = F.interpolate(
            features, size=(side, side), mode="bilinear", align_corners=False
        )  # (B, C, side, side)
    parts = []
    for scale in scales:
        kernel = width // scale
        pooled = F.avg_pool2d(features, kernel_size=kernel, stride=kernel)  # (B, C, h', w')
        parts.append(pooled.sum(dim=2).flatten(1))  # (B, C*w')
        parts.append(pooled.sum(dim=3).flatten(1))  # (B, C*h')
    return torch.cat(parts, dim=1)  # (B, L)


def _paper_descriptor(features: torch.Tensor, scales: Sequence[int]) -> torch.Tensor:
    parts = [
        F.adaptive_avg_pool2d(features, scale).flatten(1)  # (B, C*s*s)
        for scale in scales
    ]
    return torch.cat(parts, dim=1)  # (B, L)


def representation_descriptor(
    features: torch.Tensor, *, variant: str = "released", scales: Sequence[int] = (1, 2, 4)
) -> torch.Tensor:
    """The multi-scale pooled descriptor L_rc compares.

    Args:
        features: (B, C, h, w) feature map.
        variant: ``"released"``: ReLU; if h != w, bilinear resize (align_corners False) to a
            square of side max(h, w); for each scale s, average-pool with kernel = stride =
            w // s, where w is the ORIGINAL width (floor mode), then the column sums (sum over
            height, (B, C*w')) and row sums (sum over width, (B, C*h')), flattened and
            concatenated in that order. Quirk kept on purpose: a map taller than wide is pooled
            on a finer grid than s x s (a (B, C, 8, 4) map at s = 1 gives a 2 x 2 grid), and a
            width not divisible by s drops the remainder. ``"paper"``: adaptive average pool to
            s x s for each s, flattened; no ReLU.
        scales: the grid scales s, in concatenation order.

    Returns:
        (B, L) descriptor, all scales concatenated along dim 1.
    """
    if features.dim() != 4:
        raise ValueError(
            f"representation_descriptor expects features (B, C, h, w), got {tuple(features.shape)}"
        )
    if len(scales) == 0 or any(int(s) != s or s < 1 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive integers, got {scales}")
    scales = [int(s) for s in scales]
    if variant == "released":
        return _released_descriptor(features, scales)
    if variant == "paper":
        return _paper_descriptor(features, scales)
    raise ValueError(f"unknown L_rc variant {variant!r}; expected one of {VARIANTS}")


def representation_compensation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    variant: str = "released",
    scales: Sequence[int] = (1, 2, 4),
) -> torch.Tensor:
    """Representation compensation loss L_rc: SmoothL1 (beta 1, mean) between the descriptors.

    Args:
        student: (B, C, h, w) features of the CLIP-V being fine-tuned.
        teacher: (B, C, h, w) features of the frozen CLIP-V copy; treated as a constant.
        variant: ``"released"`` (default, the released code) or ``"paper"``; see
            :func:`representation_descriptor`.
        scales: the grid scales s.

    Returns:
        () the loss, computed in float32.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown L_rc variant {variant!r}; expected one of {VARIANTS}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"L_rc needs student and teacher maps of one shape, got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )
    # Detached: the teacher is a fixed target; only the student learns from L_rc.
    teacher = teacher.detach()
    student_desc = representation_descriptor(student.float(), variant=variant, scales=scales)
    teacher_desc = representation_descriptor(teacher.float(), variant=variant, scales=scales)
    return F.smooth_l1_loss(student_desc, teacher_desc, beta=1.0)
