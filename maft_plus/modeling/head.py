"""MAFTPlusHead: the class-agnostic proposal generator (Mask2Former pixel + transformer decoder).

Shapes: B batch, Q queries, S synonyms, K classes, D CLIP joint dim, H x W padded input.

Holds ``pixel_decoder`` and ``predictor`` so that state-dict keys are the released checkpoints'
``sem_seg_head.pixel_decoder.*`` and ``sem_seg_head.predictor.*``.
"""

import torch
from detectron2.config import configurable
from detectron2.modeling import ShapeSpec
from torch import nn

from .pixel_decoder import EncoderSize, MAFTPlusPixelDecoder
from .transformer_decoder import MAFTPlusTransformerDecoder, TextClasses

PROPOSAL_INPUTS = ("res2", "res3", "res4", "res5")


class MAFTPlusHead(nn.Module):
    """Pixel decoder then masked-attention decoder with the in-vocabulary class head."""

    @configurable
    def __init__(
        self, *, pixel_decoder: MAFTPlusPixelDecoder, predictor: MAFTPlusTransformerDecoder
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec], embed_dim: int):
        pd, dec = cfg.MODEL.MAFT_PLUS.PIXEL_DECODER, cfg.MODEL.MAFT_PLUS.DECODER
        return {
            "pixel_decoder": MAFTPlusPixelDecoder(
                in_channels={name: input_shape[name].channels for name in PROPOSAL_INPUTS},
                encoder=EncoderSize(
                    d_model=pd.CONV_DIM,
                    num_heads=pd.NUM_HEADS,
                    num_points=pd.NUM_POINTS,
                    dim_feedforward=pd.DIM_FEEDFORWARD,
                    num_layers=pd.NUM_ENCODER_LAYERS,
                ),
                mask_dim=pd.MASK_DIM,
                num_groups=pd.NUM_GROUPS,
                follow_autocast=cfg.MODEL.MAFT_PLUS.TEST.PIXEL_DECODER_AUTOCAST,
            ),
            "predictor": MAFTPlusTransformerDecoder(
                in_channels=pd.CONV_DIM,
                hidden_dim=dec.HIDDEN_DIM,
                num_queries=dec.NUM_QUERIES,
                num_heads=dec.NUM_HEADS,
                dim_feedforward=dec.DIM_FEEDFORWARD,
                num_layers=dec.NUM_LAYERS,
                mask_dim=pd.MASK_DIM,
                embed_dim=embed_dim,
            ),
        }

    def forward(
        self,
        features: dict[str, torch.Tensor],
        text: TextClasses,
        *,
        with_aux: bool = True,
    ) -> dict:
        """Class-agnostic mask proposals with in-vocabulary class logits.

        Args:
            features: res2..res5, (B, C_i, H/s_i, W/s_i); the caller detaches them.
            text: the vocabulary's (S+1, D) text rows, void last (not image-conditioned), and its
                synonym -> class map.
            with_aux: also predict ``aux_outputs`` (training); inference needs only the last.

        Returns:
            ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, H/4, W/4) and ``aux_outputs``, the
            same for each earlier decoder layer (empty without ``with_aux``).
        """
        mask_features, multi_scale_features = self.pixel_decoder(features)
        return self.predictor(multi_scale_features, mask_features, text, with_aux=with_aux)
