"""The frozen teacher CLIP-V for Representation Compensation: pretrained, eval mode, no gradient.

Shapes: B batch, C channels of F3, H x W padded input.

A copy of the student's visual trunk taken when the model is built, i.e. the pretrained CLIP-V
(or, for random-init test models, the student's initial weights), before any MAFT+ checkpoint
is loaded. L_rc compares its F3 with the student's. It is never trained and never saved:
MAFTPlus drops it from its state dict.
"""

import copy

import torch
from torch import nn

from .clip_convnext import run_trunk


class FrozenCLIPTeacher(nn.Module):
    """A frozen copy of a CLIP-V trunk that always stays in eval mode."""

    def __init__(self, *, trunk: nn.Module) -> None:
        """
        Args:
            trunk: the student's timm ConvNeXt trunk; it is deep-copied, not shared.
        """
        super().__init__()
        self.trunk = copy.deepcopy(trunk)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenCLIPTeacher":
        """Ignore ``mode``: the teacher is always in eval mode (no dropout, no stochastic depth)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """F3 of the frozen CLIP-V.

        Args:
            images: (B, 3, H, W) CLIP-normalized, padded images.

        Returns:
            (B, C, H/32, W/32) dense features, without gradient.
        """
        return run_trunk(self.trunk, images)[1]
