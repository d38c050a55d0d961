"""CLIP-V: an open_clip ConvNeXt CLIP as a detectron2 Backbone, with frozen heads and text tower.

Shapes: B batch, C channels, H x W padded input, N regions or sentences, D CLIP joint dim.

The whole open_clip model lives in ``self.clip_model`` so that its state-dict keys are the released
checkpoints' ``backbone.clip_model.*``. Trainable: the visual trunk's stem and four stages (or the
stages chosen by ``trainable_stages``). Frozen:
the trunk's pooling head and ``visual.head`` (the region head; gradients still flow through it into
the trunk), the text tower and ``logit_scale`` (SPEC section 2).
"""

import logging
from collections.abc import Sequence

import open_clip
import torch
from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
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
        self.trainable_stages = tuple(sorted(set(trainable_stages)))
        self.clip_model = create_clip(model_name, pretrained)
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

    def encode_text(self, sentences: list[str]) -> torch.Tensor:
        """Embed sentences with CLIP's frozen text tower.

        Returns:
            (N, D) text embeddings (not normalized), on the model's device.
        """
        device = self.clip_model.text_projection.device
        tokens = self._tokenizer(sentences).to(device)  # (N, context length)
        with torch.no_grad():
            return self.clip_model.encode_text(tokens)

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
