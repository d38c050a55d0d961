"""CLIP-V: an open_clip ConvNeXt CLIP as a detectron2 Backbone, with frozen heads and text tower.

Shapes: B batch, C channels, H x W padded input, N regions or sentences, D CLIP joint dim,
L token positions, W text-tower width.

The whole open_clip model lives in ``self.clip_model`` so that its state-dict keys are the released
checkpoints' ``backbone.clip_model.*``. Trainable: the visual trunk's stem and four stages (or the
stages chosen by ``trainable_stages``). Frozen:
the trunk's pooling head and ``visual.head`` (the region head; gradients still flow through it into
the trunk), the text tower and ``logit_scale`` (design.md section 2).
"""

import hashlib
import logging
import os
from collections.abc import Sequence

import open_clip
import torch
from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from open_clip.transformer import text_global_pool
from torch import nn

logger = logging.getLogger(__name__)

FEATURE_NAMES = ("res2", "res3", "res4", "res5")
DENSE_FEATURE = "clip_vis_dense"  # F3 in the paper: the last CLIP map, pooled into regions


def create_clip(model_name: str, pretrained: str) -> nn.Module:
    """Build an open_clip CLIP; ``pretrained`` is a tag, a local file, or "" for random weights."""
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r} (MODEL.MAFT_PLUS.CLIP_MODEL_NAME); MAFT+ uses "
            "convnext_large_d_320 or convnext_base_w_320, tests maftp-tiny-convnext-mlp/-linear"
        )
    try:
        # build where tensors are being created (e.g. the meta device for shape-only checks)
        device = torch.get_default_device()
        return open_clip.create_model(model_name, pretrained=pretrained or None, device=device)
    except Exception as exc:  # open_clip raises several kinds for a download or file failure
        raise RuntimeError(
            f"could not load the CLIP weights {pretrained!r} for {model_name!r} "
            f"(MODEL.MAFT_PLUS.CLIP_PRETRAINED): {exc}. They are downloaded from the Hugging Face "
            "hub on first use, which needs network access (and HF_HUB_OFFLINE unset); a local "
            "open_clip weight file path also works, and '' builds random weights."
        ) from exc


def pooled_positions(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor | None:
    """Where each sentence's text embedding is read, or None if the tower allows no truncation.

    Truncating a batch after its last pooled token is exact only for a causal text tower (no token
    sees a later one) that pools at a token position: open_clip's 'argmax' (the end-of-text token
    has the largest id) or 'eos' pooling.

    Args:
        tokens: (N, L) token ids, zero-padded to the context length.

    Returns:
        (N,) the pooled position of each sentence, or None.
    """
    if getattr(clip_model, "attn_mask", None) is None or not hasattr(clip_model, "transformer"):
        return None  # not open_clip's CLIP with a causal text tower (e.g. CustomTextCLIP, HF text)
    pool_type = getattr(clip_model, "text_pool_type", None)
    if pool_type == "argmax":
        return tokens.argmax(dim=-1)
    eos_id = getattr(clip_model, "text_eos_id", None)
    if pool_type == "eos" and eos_id is not None:
        return (tokens == eos_id).int().argmax(dim=-1)
    return None  # 'first' / 'last' pooling reads a fixed position: keep the full length


def encode_tokens_truncated(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP text embeddings of ``tokens``, running only the positions up to the last pooled one.

    Same result as ``clip_model.encode_text(tokens)`` (up to float rounding), through the same
    open_clip modules: token embedding, positional embedding, the transformer with its causal mask
    cropped to L x L, ``ln_final``, pooling at the end-of-text token, text projection.

    Args:
        tokens: (N, L0) token ids of a causal, token-pooled tower (see ``pooled_positions``).

    Returns:
        (N, D) text embeddings (not normalized).
    """
    positions = pooled_positions(clip_model, tokens)
    if positions is None:
        raise ValueError("this CLIP text tower cannot be truncated; use clip_model.encode_text")
    length = int(positions.max()) + 1
    tokens = tokens[:, :length]  # (N, L): later positions cannot change the pooled token
    cast_dtype = clip_model.transformer.get_cast_dtype()
    x = clip_model.token_embedding(tokens).to(cast_dtype)  # (N, L, W)
    x = x + clip_model.positional_embedding[:length].to(cast_dtype)  # (N, L, W)
    causal_mask = clip_model.attn_mask[:length, :length]  # (L, L) additive, -inf above diagonal
    # open_clip's Transformer takes (N, L, W) and transposes to (L, N, W) itself when its
    # blocks are not batch_first, so the input layout is the same either way.
    x = clip_model.transformer(x, attn_mask=causal_mask)  # (N, L, W)
    x = clip_model.ln_final(x)  # (N, L, W)
    pooled = text_global_pool(
        x, tokens, clip_model.text_pool_type, eos_token_id=getattr(clip_model, "text_eos_id", None)
    )  # (N, W)
    projection = clip_model.text_projection
    if projection is None:
        return pooled
    if isinstance(projection, nn.Linear):
        return projection(pooled)  # (N, D)
    return pooled @ projection  # (N, D)


def run_trunk(trunk: nn.Module, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run a timm ConvNeXt trunk: the four stage outputs (strides 4..32) and F3 = norm_pre(res5)."""
    x = trunk.stem(images)
    stages = []
    for stage in trunk.stages:
        x = stage(x)
        stages.append(x)
    return stages, trunk.norm_pre(x)


@BACKBONE_REGISTRY.register()
class CLIPConvNeXt(Backbone):
    """open_clip ConvNeXt CLIP: res2..res5 and F3 for segmentation, region head, text encoding."""

    @configurable
    def __init__(
        self, *, model_name: str, pretrained: str, trainable_stages: Sequence[int] = (0, 1, 2, 3)
    ) -> None:
        """
        Args:
            model_name: open_clip architecture (a four-stage ConvNeXt CLIP).
            pretrained: open_clip pretrained tag, a local weight file, or "" for random weights.
            trainable_stages: trunk stages fine-tuned (the stem trains with stage 0); the rest of
                CLIP is frozen. An empty list freezes CLIP-V entirely.
        """
        super().__init__()
        if not set(trainable_stages) <= {0, 1, 2, 3}:
            raise ValueError(
                f"trainable_stages (MODEL.MAFT_PLUS.CLIP_TRAINABLE_STAGES) must be among 0..3, "
                f"got {list(trainable_stages)}"
            )
        self.model_name = model_name
        self.pretrained = pretrained
        self.trainable_stages = tuple(sorted(set(trainable_stages)))
        self.clip_model = create_clip(model_name, pretrained)
        self._built_text_versions = self._text_versions()  # to notice later weight loads
        self._text_hash: tuple[tuple[int, ...], str] | None = None  # (versions, sha256)
        trunk = self.clip_model.visual.trunk
        if not hasattr(trunk, "stages") or len(trunk.feature_info) != 4:
            raise ValueError(f"{model_name!r} is not a four-stage ConvNeXt CLIP")
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self._out_features = [*FEATURE_NAMES, DENSE_FEATURE]
        self._out_feature_channels = {}
        self._out_feature_strides = {}
        for name, info in zip(FEATURE_NAMES, trunk.feature_info, strict=True):
            self._out_feature_channels[name] = info["num_chs"]
            self._out_feature_strides[name] = info["reduction"]
        self._out_feature_channels[DENSE_FEATURE] = self._out_feature_channels["res5"]
        self._out_feature_strides[DENSE_FEATURE] = self._out_feature_strides["res5"]
        self.embed_dim = self.clip_model.text_projection.shape[-1]
        for param in self.frozen_parameters():
            param.requires_grad_(False)
        logger.info(
            "CLIP-V %s: trainable stages %s%s; frozen: heads, text tower, logit_scale",
            model_name,
            list(self.trainable_stages),
            " and the stem" if 0 in self.trainable_stages else "",
        )

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        return {
            "model_name": cfg.MODEL.MAFT_PLUS.CLIP_MODEL_NAME,
            "pretrained": cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED,
            "trainable_stages": cfg.MODEL.MAFT_PLUS.CLIP_TRAINABLE_STAGES,
        }

    def trainable_modules(self) -> list[nn.Module]:
        """The trunk modules that are fine-tuned: the chosen stages, and the stem with stage 0."""
        trunk = self.clip_model.visual.trunk
        modules = [trunk.stem] if 0 in self.trainable_stages else []
        return modules + [trunk.stages[i] for i in self.trainable_stages]

    def frozen_parameters(self) -> list[nn.Parameter]:
        """Every CLIP parameter outside ``trainable_modules()`` (heads, text tower, ...)."""
        trainable = {id(p) for m in self.trainable_modules() for p in m.parameters()}
        return [p for p in self.clip_model.parameters() if id(p) not in trainable]

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """CLIP-V features of normalized, padded images.

        Args:
            images: (B, 3, H, W), CLIP-normalized, H and W multiples of 32.

        Returns:
            res2..res5: (B, C_i, H/s_i, W/s_i) for strides 4, 8, 16, 32; clip_vis_dense: F3,
            ``trunk.norm_pre(res5)`` (B, C_5, H/32, W/32).
        """
        stages, dense = run_trunk(self.clip_model.visual.trunk, images)
        return {**dict(zip(FEATURE_NAMES, stages, strict=True)), DENSE_FEATURE: dense}

    def region_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map pooled dense features to CLIP's joint space through the frozen heads.

        Args:
            pooled: (N, C_5, 1, 1) pooled F3 features.

        Returns:
            (N, D) region embeddings (not normalized).
        """
        visual = self.clip_model.visual
        return visual.head(visual.trunk.head(pooled))

    def encode_text(
        self, sentences: list[str], *, truncate: bool = True, batch_size: int = 0
    ) -> torch.Tensor:
        """Embed sentences with CLIP's frozen text tower.

        Args:
            sentences: N sentences.
            truncate: run each batch only up to its longest sentence (exact for CLIP's causal,
                end-of-text-pooled tower; see ``encode_tokens_truncated``), with sentences sorted
                by token length so batches hold similar lengths. False: the full context length
                through ``clip_model.encode_text``.
            batch_size: the most sentences run at once; 0 runs all N together.

        Returns:
            (N, D) text embeddings (not normalized) in ``sentences`` order, on the model's device.
        """
        if not sentences:
            raise ValueError("encode_text needs at least one sentence, got an empty list")
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        device = self.clip_model.positional_embedding.device
        tokens = self._tokenizer(sentences).to(device)  # (N, context length)
        positions = pooled_positions(self.clip_model, tokens) if truncate else None
        step = batch_size or max(len(sentences), 1)
        with torch.no_grad():
            if positions is None:
                batches = [
                    self.clip_model.encode_text(tokens[i : i + step])
                    for i in range(0, len(tokens), step)
                ]
                return torch.cat(batches)  # (N, D)
            order = torch.argsort(positions, stable=True)  # (N,) shortest sentences first
            embeds = None
            for start in range(0, len(order), step):
                index = order[start : start + step]  # (n,)
                batch = encode_tokens_truncated(self.clip_model, tokens[index])  # (n, D)
                if embeds is None:
                    embeds = batch.new_empty(len(order), batch.shape[1])  # (N, D)
                embeds[index] = batch  # back to the order of ``sentences``
            return embeds

    def _text_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """The text tower's parameters: every CLIP parameter outside the visual tower and logits."""
        skipped = ("visual.", "logit_scale", "logit_bias")
        return [
            (name, param)
            for name, param in self.clip_model.named_parameters()
            if not name.startswith(skipped)
        ]

    def _text_versions(self) -> tuple[int, ...]:
        """In-place-write counters of the text-tower parameters (``load_state_dict`` bumps them)."""
        return tuple(param._version for _, param in self._text_parameters())

    def text_identity(self) -> dict[str, str]:
        """What, besides the sentences, determines ``encode_text``: a key for cached embeddings.

        The weights are named by the pretrained tag, or a weight file's path, size and mtime, as
        long as no text-tower parameter was written since the model was built; otherwise (random
        init, or weights loaded later, e.g. from a MAFT+ checkpoint) by a sha256 of the text-tower
        parameters, computed once per change.
        """
        versions = self._text_versions()
        if self.pretrained and versions == self._built_text_versions:
            path = os.path.abspath(os.path.expanduser(self.pretrained))
            if os.path.isfile(path):
                stat = os.stat(path)
                weights = f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"
            else:
                weights = f"tag:{self.pretrained}"
        else:
            if self._text_hash is None or self._text_hash[0] != versions:
                self._text_hash = (versions, self._hash_text_tower())
            weights = f"sha256:{self._text_hash[1]}"
        return {
            "clip_model": self.model_name,
            "weights": weights,
            "dtype": str(self.clip_model.positional_embedding.dtype),
            "open_clip": open_clip.__version__,
        }

    def _hash_text_tower(self) -> str:
        digest = hashlib.sha256()
        for name, param in self._text_parameters():
            data = param.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
            digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's frozen temperature, ``clamp(exp(logit_scale), max=100)`` (a scalar)."""
        return self.clip_model.logit_scale.exp().clamp(max=100)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }
