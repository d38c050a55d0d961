"""MAFT+ pixel decoder: a deformable encoder over res5/res4/res3 plus one FPN step to res2.

Shapes: B batch, C_l input channels of level l, C conv_dim, C_m mask_dim, H x W the padded image,
h_l x w_l the map of stride s_l (H/s_l x W/s_l).
"""

import contextlib

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from fvcore.nn import weight_init
from torch import nn

from ..position_encoding import sine_position_encoding
from .deformable_encoder import RELEASED_ENCODER, EncoderSize, MultiScaleDeformableEncoder

# encoder inputs, coarsest first: the order of input_proj, level_embed and multi_scale_features
ENCODER_FEATURES = ("res5", "res4", "res3")
FPN_FEATURE = "res2"


class MAFTPlusPixelDecoder(nn.Module):
    """Mask2Former's multi-scale deformable-attention pixel decoder, run in fp32 by default.

    Each of res5, res4, res3 goes through ``input_proj`` (Conv1x1 with bias + GroupNorm) and the
    deformable encoder; the encoded stride-8 map is upsampled onto ``adapter_1(res2)``, refined by
    ``layer_1`` (Conv3x3 + GroupNorm + ReLU) and projected by ``mask_features`` (Conv1x1).
    Parameter names match the official checkpoints under ``sem_seg_head.pixel_decoder.``.
    """

    def __init__(
        self,
        *,
        in_channels: dict[str, int],
        encoder: EncoderSize = RELEASED_ENCODER,
        mask_dim: int = 256,
        num_groups: int = 32,
        follow_autocast: bool = False,
    ) -> None:
        """
        Args:
            in_channels: channels of each backbone feature, keys exactly res2, res3, res4, res5
                (strides 4, 8, 16, 32).
            encoder: sizes of the deformable encoder; its ``d_model`` is also the width of the
                projections and of the FPN step (conv_dim), and it has 3 levels.
            mask_dim: channels of the returned mask features.
            num_groups: GroupNorm groups of every projection.
            follow_autocast: in eval mode, run under the autocast in force (the bfloat16 fast
                path) instead of in fp32 with autocast disabled (as released). Sampling
                locations, attention softmax and position encodings stay fp32 either way.
        """
        super().__init__()
        expected = {FPN_FEATURE, *ENCODER_FEATURES}
        if set(in_channels) != expected:
            raise ValueError(
                f"in_channels must have exactly the keys {sorted(expected)}, "
                f"got {sorted(in_channels)}"
            )
        if encoder.num_levels != len(ENCODER_FEATURES):
            raise ValueError(
                f"encoder.num_levels must be {len(ENCODER_FEATURES)} (res5, res4, res3), "
                f"got {encoder.num_levels}"
            )
        conv_dim = encoder.d_model
        if conv_dim % 4:
            raise ValueError(
                f"conv_dim must be a multiple of 4 (sine pairs per axis), got {conv_dim}"
            )
        self.in_channels = dict(in_channels)
        self.conv_dim = conv_dim
        self.follow_autocast = follow_autocast
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels[name], conv_dim, kernel_size=1),
                nn.GroupNorm(num_groups, conv_dim),
            )
            for name in ENCODER_FEATURES
        )
        self.transformer = MultiScaleDeformableEncoder(encoder)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        self.adapter_1 = Conv2d(
            in_channels[FPN_FEATURE],
            conv_dim,
            kernel_size=1,
            bias=False,
            norm=nn.GroupNorm(num_groups, conv_dim),
        )
        self.layer_1 = Conv2d(
            conv_dim,
            conv_dim,
            kernel_size=3,
            padding=1,
            bias=False,
            norm=nn.GroupNorm(num_groups, conv_dim),
            activation=F.relu_,  # in place: nothing reads the GroupNorm's output again
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Input projections Xavier-uniform; the FPN convs Caffe2-Xavier; all conv biases 0."""
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        for conv in (self.adapter_1, self.layer_1, self.mask_features):
            weight_init.c2_xavier_fill(conv)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode the backbone pyramid: in fp32 (autocast disabled inside, inputs cast to fp32)
        unless ``follow_autocast`` in eval mode, where matrix products and convolutions run in
        the autocast's dtype and the outputs come in the dtype it leaves them in.

        Args:
            features: res2..res5, each (B, C_l, h_l, w_l) at strides 4, 8, 16, 32.

        Returns:
            mask_features: (B, C_m, H/4, W/4) per-pixel embeddings for the mask logits.
            multi_scale_features: 3 encoded maps (B, C, h_l, w_l) at strides 32, 16, 8, in that
                order (the inputs of the transformer decoder's cross-attention).
        """
        for name, channels in self.in_channels.items():
            feature = features.get(name)
            if feature is None or feature.dim() != 4 or feature.shape[1] != channels:
                got = None if feature is None else tuple(feature.shape)
                raise ValueError(
                    f"MAFTPlusPixelDecoder expects features[{name!r}] of shape "
                    f"(B, {channels}, h, w), "
                    f"got {got}"
                )
        device = features[FPN_FEATURE].device
        low_precision = (
            self.follow_autocast and not self.training and torch.is_autocast_enabled(device.type)
        )
        # fp32: the inputs are cast up; under autocast they stay as the backbone left them
        cast = (lambda x: x) if low_precision else (lambda x: x.float())
        fp32 = torch.autocast(device_type=device.type, enabled=False)
        with contextlib.nullcontext() if low_precision else fp32:
            srcs, pos_embeds = [], []
            for proj, name in zip(self.input_proj, ENCODER_FEATURES, strict=True):
                x = cast(features[name])  # (B, C_l, h_l, w_l)
                srcs.append(proj(x))  # (B, C, h_l, w_l)
                batch, _, height, width = x.shape
                pos_embeds.append(  # fp32 in both modes: sin/cos of angles up to 2 pi
                    sine_position_encoding(
                        batch, height, width, self.conv_dim // 2, device=device, dtype=torch.float32
                    )  # (B, C, h_l, w_l)
                )
            multi_scale_features = self.transformer(srcs, pos_embeds)  # strides 32, 16, 8
            lateral = self.adapter_1(cast(features[FPN_FEATURE]))  # (B, C, H/4, W/4)
            upsampled = F.interpolate(
                # NCHW first: upsampling the encoder's channels-last strided map is ~8x slower
                multi_scale_features[-1].contiguous(),
                size=lateral.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )  # (B, C, H/4, W/4)
            fpn = self.layer_1(lateral.add_(upsampled))  # (B, C, H/4, W/4), in place
            return self.mask_features(fpn), multi_scale_features
