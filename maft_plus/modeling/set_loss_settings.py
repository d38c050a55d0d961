"""The settings of the Mask2Former set loss that travel together (defaults as released).

One set of weights serves both the matcher's costs and the loss terms: the config has one key per
term (``MODEL.MAFT_PLUS.LOSS.{CLASS,MASK,DICE}_WEIGHT``), as in the released configs.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TermWeights:
    """Weights of the class (cross-entropy), mask (sigmoid BCE) and dice terms."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0

    def __post_init__(self) -> None:
        if min(self.class_weight, self.mask_weight, self.dice_weight) < 0:
            raise ValueError(f"loss term weights must be >= 0, got {self}")


@dataclass(frozen=True)
class PointSampling:
    """Where the mask terms are measured: ``num_points`` points per matched mask, picked from
    ``oversample_ratio * num_points`` random candidates, an ``importance_sample_ratio`` share of
    them the most uncertain and the rest uniform (PointRend's importance sampling)."""

    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.oversample_ratio < 1:
            raise ValueError(f"oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ValueError(
                f"importance_sample_ratio must be in [0, 1], got {self.importance_sample_ratio}"
            )


RELEASED_WEIGHTS = TermWeights()
RELEASED_SAMPLING = PointSampling()
