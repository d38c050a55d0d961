"""Masked-attention transformer decoder (Mask2Former) with the FC-CLIP in-vocabulary class head.

Shapes: B batch, Q queries, C hidden channels, M heads, K classes, S synonyms, D CLIP joint dim,
h_l x w_l the pixel-decoder level l (strides 32, 16, 8), H/4 x W/4 the mask features.

Learned queries attend to one pixel-decoder level per layer (level ``i % 3`` for layer ``i``),
each cross-attention restricted to the foreground of the previous mask prediction. A prediction
(masks and class logits) is made before the first layer and after every layer; the last is the
main output and the others feed the auxiliary losses. Classes are scored against CLIP text
embeddings (with a void row), taking the max over each class's synonyms. See
``docs/design.md`` sections 4 and 11.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..mask_pooling import mask_pool
from ..position_encoding import sine_position_encoding
from .class_logits import TextClasses
from .layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer

NUM_FEATURE_LEVELS = 3


def build_attention_mask(level_logits: torch.Tensor) -> torch.Tensor:
    """Cross-attention mask for the next layer from the current mask prediction at its level.

    Args:
        level_logits: (B, Q, h, w) mask logits resized (bilinearly, align_corners False) to the
            (h, w) of the memory level the next layer attends to.

    Returns:
        (B, 1, Q, h*w) bool, True (blocked) where ``sigmoid(logit) < 0.5``, for every head; a
        query whose whole row is blocked is unblocked everywhere.
    """
    # Detached: the mask is a hard routing decision of the next layer, not something to train
    # through.
    blocked = level_logits.detach().sigmoid().flatten(2) < 0.5  # (B, Q, h*w)
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)  # a fully blocked query sees everything
    return blocked[:, None]  # (B, 1, Q, h*w), broadcast over the heads


def project_masks(mask_embeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mask logits: every query's embedding dotted with every pixel's feature.

    Args:
        mask_embeds: (B, Q, mask_dim) query embeddings.
        features: (B, mask_dim, h, w) per-pixel features.

    Returns:
        (B, Q, h, w) mask logits.
    """
    return torch.einsum("bqc,bchw->bqhw", mask_embeds, features)


class MAFTPlusTransformerDecoder(nn.Module):
    """Mask2Former decoder predicting Q masks and their in-vocabulary class logits.

    Parameter names follow the official checkpoints (``sem_seg_head.predictor.*`` without the
    prefix), so those weights load without a mapping.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        num_layers: int = 9,
        mask_dim: int = 256,
        embed_dim: int,
    ) -> None:
        """
        Args:
            in_channels: channels of the pixel-decoder levels; must equal ``hidden_dim`` (the
                decoder has no input projection, as in the released checkpoints).
            hidden_dim: C, width of the queries and of the attention layers.
            num_queries: Q, learned queries (``query_feat`` and ``query_embed``).
            num_heads: M, attention heads.
            dim_feedforward: hidden width of each FFN sublayer.
            num_layers: decoder layers; ``num_layers + 1`` predictions are made.
            mask_dim: channels of the mask features (the output of ``mask_embed``).
            embed_dim: D, CLIP joint embedding dim (768 Large, 640 Base), output of ``class_embed``.
        """
        super().__init__()
        if in_channels != hidden_dim:
            raise ValueError(
                f"in_channels ({in_channels}) must equal hidden_dim ({hidden_dim}): the decoder "
                f"has no input projection, so the pixel-decoder levels must be hidden_dim wide"
            )
        if hidden_dim % 4:
            raise ValueError(
                f"hidden_dim must be a multiple of 4 (sine encoding), got {hidden_dim}"
            )
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers

        # Registration order reproduces the official state-dict order.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial scale
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d_model=hidden_dim, num_heads=num_heads) for _ in range(num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d_model=hidden_dim, num_heads=num_heads) for _ in range(num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d_model=hidden_dim, dim_feedforward=dim_feedforward) for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # initial query features
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # query positions
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, hidden_dim)  # added to the memory
        self.mask_embed = MLP(
            input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=mask_dim, num_layers=3
        )
        self._mask_pooling_proj = nn.Sequential(
            nn.LayerNorm(mask_dim), nn.Linear(mask_dim, hidden_dim)
        )
        self.class_embed = MLP(
            input_dim=hidden_dim, hidden_dim=hidden_dim, output_dim=embed_dim, num_layers=3
        )

    def forward(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        text: TextClasses,
        *,
        with_aux: bool = True,
    ) -> dict:
        """Predict masks and class logits for every query.

        Args:
            multi_scale_features: 3 maps (B, C, h_l, w_l), strides 32, 16, 8.
            mask_features: (B, mask_dim, H/4, W/4) per-pixel embeddings.
            text: the vocabulary's (S+1, D) text rows (void last) and synonym -> class map.
            with_aux: also return the earlier predictions (for the auxiliary losses). When False
                the earlier layers predict only what their successors' attention needs (the
                masks at the level's size); the final outputs are the same.

        Returns:
            ``pred_logits`` (B, Q, K+1) class logits (void last), ``pred_masks`` (B, Q, H/4, W/4)
            mask logits, and ``aux_outputs``: ``num_layers`` dicts with the same two keys for the
            earlier predictions (before layer 0, after layer 0, ...), empty if not ``with_aux``.
        """
        self._check_inputs(multi_scale_features, mask_features, text.embeds)
        batch_size = mask_features.shape[0]
        memories, positions, sizes = [], [], []
        for level, feature in enumerate(multi_scale_features):
            height, width = feature.shape[-2:]
            pos = sine_position_encoding(
                batch_size,
                height,
                width,
                self.hidden_dim // 2,
                device=feature.device,
                dtype=feature.dtype,
            )  # (B, C, h_l, w_l)
            positions.append(pos.flatten(2).transpose(1, 2))  # (B, h_l*w_l, C)
            memory = feature.flatten(2).transpose(1, 2)  # (B, h_l*w_l, C)
            memories.append(memory + self.level_embed.weight[level])
            sizes.append((height, width))

        query_pos = self.query_embed.weight  # (Q, C), broadcast over the batch
        output = self.query_feat.weight.unsqueeze(0).expand(batch_size, -1, -1)  # (B, Q, C)

        # The attention masks need the mask logits resized to each level. Resizing is linear and
        # so are the logits in the features: the logits of the resized features are the resized
        # logits (up to rounding), for a fraction of the work of full-resolution logits.
        level_features = [
            F.interpolate(mask_features.detach(), size=size, mode="bilinear", align_corners=False)
            for size in sizes
        ]  # (B, mask_dim, h_l, w_l) each

        aux_outputs = []
        decoder_output, mask_embeds = self._embed_queries(output)
        for i in range(self.num_layers):
            if with_aux:
                mask_logits = project_masks(mask_embeds, mask_features)  # (B, Q, H/4, W/4)
                class_logits = self._predict_classes(
                    decoder_output, mask_logits, mask_features, text
                )
                aux_outputs.append({"pred_logits": class_logits, "pred_masks": mask_logits})
            level = i % NUM_FEATURE_LEVELS  # layer i attends to level i mod 3
            attn_mask = build_attention_mask(
                project_masks(mask_embeds.detach(), level_features[level])
            )  # (B, 1, Q, h_l*w_l)
            output = self.transformer_cross_attention_layers[i](
                output,
                memories[level],
                pos=positions[level],
                query_pos=query_pos,
                attn_mask=attn_mask,
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            decoder_output, mask_embeds = self._embed_queries(output)

        mask_logits = project_masks(mask_embeds, mask_features)  # (B, Q, H/4, W/4)
        class_logits = self._predict_classes(decoder_output, mask_logits, mask_features, text)
        return {"pred_logits": class_logits, "pred_masks": mask_logits, "aux_outputs": aux_outputs}

    def _embed_queries(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized queries and their mask embeddings (`project_masks` makes their logits).

        Args:
            output: (B, Q, C) query features.

        Returns:
            (B, Q, C) normalized query features and (B, Q, mask_dim) mask embeddings.
        """
        decoder_output = self.decoder_norm(output)  # (B, Q, C)
        return decoder_output, self.mask_embed(decoder_output)

    def _predict_classes(
        self,
        decoder_output: torch.Tensor,
        mask_logits: torch.Tensor,
        mask_features: torch.Tensor,
        text: TextClasses,
    ) -> torch.Tensor:
        """In-vocabulary class logits of the queries, from their features and mask-pooled pixels.

        Args:
            decoder_output: (B, Q, C) normalized query features (from ``_embed_queries``).
            mask_logits: (B, Q, H/4, W/4) the queries' mask logits.
            mask_features, text: as in ``forward``.

        Returns:
            (B, Q, K+1) class logits.
        """
        pooled = mask_pool(mask_features, mask_logits)  # (B, Q, mask_dim)
        class_embeds = self.class_embed(
            self._mask_pooling_proj(pooled) + decoder_output
        )  # (B, Q, D)
        # Cosine logits in fp32 whatever the autocast: times a scale up to 100, bf16's rounding of
        # the embeddings would move a logit by up to ~0.2.
        class_embeds = F.normalize(class_embeds.float(), dim=-1)
        scale = self.logit_scale.exp().clamp(max=100)
        with torch.autocast(device_type=class_embeds.device.type, enabled=False):
            synonym_logits = scale * class_embeds @ text.embeds.float().T  # (B, Q, S+1)
        return text.class_logits(synonym_logits)

    def _check_inputs(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        text_embeds: torch.Tensor,
    ) -> None:
        """Raise a ValueError naming the input whose shape does not fit the decoder."""
        if len(multi_scale_features) != NUM_FEATURE_LEVELS:
            raise ValueError(
                f"multi_scale_features must hold {NUM_FEATURE_LEVELS} maps (strides 32, 16, 8), "
                f"got {len(multi_scale_features)}"
            )
        batch_size, mask_dim = mask_features.shape[:2]
        for level, feature in enumerate(multi_scale_features):
            if feature.dim() != 4 or feature.shape[:2] != (batch_size, self.hidden_dim):
                raise ValueError(
                    f"multi_scale_features[{level}] must be (B={batch_size}, C={self.hidden_dim}, "
                    f"h, w), got {tuple(feature.shape)}"
                )
        if mask_dim != self.mask_embed.layers[-1].out_features:
            raise ValueError(
                f"mask_features must have mask_dim={self.mask_embed.layers[-1].out_features} "
                f"channels, got {tuple(mask_features.shape)}"
            )
        embed_dim = self.class_embed.layers[-1].out_features
        if text_embeds.dim() != 2 or text_embeds.shape[1] != embed_dim:
            raise ValueError(
                f"text.embeds must be (S+1, D={embed_dim}) with the void row last, "
                f"got {tuple(text_embeds.shape)}"
            )
