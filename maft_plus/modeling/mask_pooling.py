"""Mask pooling: the average of a feature map inside each (binarized) predicted mask.

Shapes: B batch, Q masks, C channels, h x w the feature map, H x W the masks.
"""

import torch
import torch.nn.functional as F


def mask_pool(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Average ``features`` over the pixels where each mask logit is positive.

    Args:
        features: (B, C, h, w) feature map.
        mask_logits: (B, Q, H, W) mask logits; resized bilinearly (align_corners False) to (h, w)
            when the sizes differ, then binarized ``> 0``. No gradient flows into the masks.

    Returns:
        (B, Q, C) pooled features, ``sum(x * m) / (sum(m) + 1e-8)``; an empty mask gives zeros.
    """
    if features.dim() != 4 or mask_logits.dim() != 4 or features.shape[0] != mask_logits.shape[0]:
        raise ValueError(
            f"mask_pool expects features (B, C, h, w) and mask_logits (B, Q, H, W) with one B, "
            f"got {tuple(features.shape)} and {tuple(mask_logits.shape)}"
        )
    with torch.no_grad():
        if mask_logits.shape[-2:] != features.shape[-2:]:
            mask_logits = F.interpolate(
                mask_logits, size=features.shape[-2:], mode="bilinear", align_corners=False
            )
        masks = (mask_logits > 0).to(features.dtype)  # (B, Q, h, w)
        area = masks.sum(dim=(-2, -1))[..., None] + 1e-8  # (B, Q, 1)
    pooled = torch.einsum("bqhw,bchw->bqc", masks, features)  # (B, Q, C)
    return pooled / area
