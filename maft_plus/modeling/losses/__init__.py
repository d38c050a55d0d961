"""The two MAFT+ losses: mask-aware (L_ma) and representation compensation (L_rc)."""

from .mask_aware import mask_aware_loss, max_over_instances, soft_ious
from .representation_compensation import (
    representation_compensation_loss,
    representation_descriptor,
)

__all__ = [
    "mask_aware_loss",
    "max_over_instances",
    "representation_compensation_loss",
    "representation_descriptor",
    "soft_ious",
]
