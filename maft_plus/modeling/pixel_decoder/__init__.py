"""Deformable-attention pixel decoder (Mask2Former) with a pure-PyTorch sampler."""

from .deformable_encoder import (
    DeformableEncoder,
    DeformableEncoderLayer,
    EncoderSize,
    MultiScaleDeformableEncoder,
    pixel_centre_reference_points,
)
from .ms_deform_attn import MultiScaleDeformableAttention, ms_deform_attn
from .pixel_decoder import MAFTPlusPixelDecoder

__all__ = [
    "DeformableEncoder",
    "DeformableEncoderLayer",
    "EncoderSize",
    "MAFTPlusPixelDecoder",
    "MultiScaleDeformableAttention",
    "MultiScaleDeformableEncoder",
    "ms_deform_attn",
    "pixel_centre_reference_points",
]
