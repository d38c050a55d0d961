"""MAFTPlus: the meta-architecture; it orchestrates, the parts compute (design.md sections 1, 5, 6).

Shapes: B batch, Q queries, S synonyms, K classes, D CLIP joint dim, C channels of F3,
H x W padded input, h x w F3's size.
"""

import contextlib
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList
from torch import nn

from ..data.vocabulary import Vocabulary
from ..native_precision import warn_if_emulated
from .backbone import DENSE_FEATURE, CLIPConvNeXt, FrozenCLIPTeacher
from .cdt import ContentDependentTransfer, dense_to_tokens
from .head import PROPOSAL_INPUTS, MAFTPlusHead
from .mask_pooling import mask_pool
from .objective import MAFTPlusObjective
from .postprocess import (
    ImageSizes,
    InferenceOptions,
    Tasks,
    classification_probs,
    image_results,
)
from .text_classifier import TextEmbedder
from .text_mlp_adapter import TextMLPAdapter
from .transformer_decoder import TextClasses

logger = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
TEACHER_PREFIX = "teacher."  # never saved: rebuilt from the pretrained tag when training


@META_ARCH_REGISTRY.register()
class MAFTPlus(nn.Module):
    """MAFT+: CLIP-V backbone, Mask2Former proposals, CLIP region classification with CDT."""

    @configurable
    def __init__(
        self,
        *,
        backbone: CLIPConvNeXt,
        sem_seg_head: MAFTPlusHead,
        cdt: ContentDependentTransfer | TextMLPAdapter | None,
        token_layout: str,
        text_batch_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int,
        channels_last: bool,
        autocast: str,
        tasks: Tasks,
        inference_options: InferenceOptions,
        objective: MAFTPlusObjective | None = None,
        teacher: FrozenCLIPTeacher | None = None,
    ) -> None:
        """
        Args:
            cdt: the Content-Dependent Transfer; a TextMLPAdapter (the "MLP instead of CDT"
                ablation); or None to classify with the plain text embeddings.
            objective: the training losses; None builds an inference-only model.
            teacher: the frozen pretrained CLIP-V for L_rc (training only; never saved).
            tasks: the outputs of a call that does not name its own (``forward``'s ``tasks``).
            Others: see ``maft_plus/config.py``.
        """
        super().__init__()
        if objective is not None and objective.needs_teacher and teacher is None:
            raise ValueError("L_rc (LOSS.RC_WEIGHT > 0) needs the frozen teacher CLIP-V")
        if autocast not in AUTOCAST_DTYPES:
            raise ValueError(
                f"MODEL.MAFT_PLUS.TEST.AUTOCAST must be one of {list(AUTOCAST_DTYPES)}, "
                f"got {autocast!r}"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.cdt = cdt
        self.void_embedding = nn.Embedding(1, backbone.embed_dim)  # learned "no object" text row
        self.token_layout = token_layout
        self.text_embedder = TextEmbedder(
            encode_text=backbone.encode_text,
            batch_size=text_batch_size,
            # rows persist on disk, keyed by the text tower's identity (model, weights, dtype)
            cache_identity=getattr(backbone, "text_identity", None),
        )
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False
        )
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.autocast_dtype = AUTOCAST_DTYPES[autocast]
        self.tasks = tasks
        self.inference_options = inference_options
        self.vocabulary: Vocabulary | None = None
        self.objective = objective
        self.teacher = teacher
        # The teacher is a frozen copy of pretrained weights: keep it out of checkpoints.
        self._register_state_dict_hook(_drop_teacher_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_teacher_keys)

    @classmethod
    def from_config(cls, cfg, training: bool = False):
        """``training=True`` also builds the losses and, when L_rc is on, the frozen teacher."""
        m = cfg.MODEL.MAFT_PLUS
        backbone = build_backbone(cfg)
        objective = MAFTPlusObjective(cfg) if training else None
        teacher = None
        if objective is not None and objective.needs_teacher:
            teacher = FrozenCLIPTeacher(trunk=backbone.clip_model.visual.trunk)
        cdt = None
        if m.CDT.TYPE == "mlp":
            cdt = TextMLPAdapter(embed_dim=backbone.embed_dim, residual=m.CDT.RESIDUAL)
        elif m.CDT.TYPE != "cross_attention":
            raise ValueError(
                f"MODEL.MAFT_PLUS.CDT.TYPE must be 'cross_attention' or 'mlp', got {m.CDT.TYPE!r}"
            )
        elif m.CDT.NUM_LAYERS > 0:
            cdt = ContentDependentTransfer(
                embed_dim=backbone.embed_dim,
                num_heads=m.CDT.NUM_HEADS,
                num_layers=m.CDT.NUM_LAYERS,
                residual=m.CDT.RESIDUAL,
            )
        return {
            "backbone": backbone,
            "sem_seg_head": MAFTPlusHead(
                cfg, input_shape=backbone.output_shape(), embed_dim=backbone.embed_dim
            ),
            "cdt": cdt,
            "objective": objective,
            "teacher": teacher,
            "token_layout": m.CDT.TOKEN_LAYOUT,
            "text_batch_size": m.TEXT_BATCH_SIZE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": m.SIZE_DIVISIBILITY,
            "channels_last": m.CHANNELS_LAST,
            "autocast": m.TEST.AUTOCAST,
            "tasks": Tasks(
                semantic=m.TEST.SEMANTIC_ON,
                panoptic=m.TEST.PANOPTIC_ON,
                instance=m.TEST.INSTANCE_ON,
            ),
            "inference_options": InferenceOptions(
                semantic_output=m.TEST.SEMANTIC_OUTPUT,
                object_mask_threshold=m.TEST.OBJECT_MASK_THRESHOLD,
                overlap_threshold=m.TEST.OVERLAP_THRESHOLD,
                instance_top_k=m.TEST.INSTANCE_TOP_K,
                semantic_chunk_size=m.TEST.SEMANTIC_CHUNK_SIZE,
            ),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def set_vocabulary(
        self, names: Vocabulary | Sequence[str], is_thing: Sequence[bool] | None = None
    ) -> None:
        """Set the classes to segment.

        Args:
            names: a :class:`Vocabulary` (used as it is), or one comma-separated synonym string
                per class, e.g. ``["cat, kitty", "sky"]``.
            is_thing: with strings: per class, whether it is a countable thing (instances) or
                stuff (merged per class) in panoptic and instance output; None means every class
                is a thing.
        """
        if isinstance(names, Vocabulary):
            if is_thing is not None:
                raise ValueError("is_thing goes with class strings; a Vocabulary has its own")
            self.vocabulary = names
            return
        self.vocabulary = Vocabulary.from_names(names, is_thing)

    def text_embeddings(self) -> torch.Tensor:
        """(S+1, D) L2-normalized text rows of the current vocabulary, the learned void row last."""
        if self.vocabulary is None:
            raise RuntimeError("no vocabulary: call model.set_vocabulary(names) before inference")
        text = self.text_embedder(self.vocabulary).to(self.device)  # (S, D), cached per vocabulary
        void = F.normalize(self.void_embedding.weight, dim=-1)  # (1, D)
        return torch.cat([text, void], dim=0)  # (S+1, D)

    def preprocess(self, batched_inputs: list[dict]) -> ImageList:
        """Validate, normalize and zero-pad the images to a multiple of the size divisibility."""
        images = []
        for i, inputs in enumerate(batched_inputs):
            image = inputs.get("image") if isinstance(inputs, dict) else None
            if not isinstance(image, torch.Tensor):
                raise TypeError(f"batched_inputs[{i}]['image'] must be a torch.Tensor (3, H, W)")
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"batched_inputs[{i}]['image'] has shape {tuple(image.shape)}; expected an RGB "
                    "image (3, H, W) (convert grayscale/RGBA images to RGB first)"
                )
            if not (image.dtype == torch.uint8 or image.dtype.is_floating_point):
                raise ValueError(
                    f"batched_inputs[{i}]['image'] has dtype {image.dtype}; expected uint8 or a "
                    "floating dtype with values in 0-255"
                )
            image = image.to(self.device, torch.float32)
            images.append((image - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(images, self.size_divisibility, pad_value=0.0)

    def forward(self, batched_inputs: list[dict], tasks: Tasks | None = None) -> list[dict]:
        """Segment a batch with the current vocabulary (detectron2's input and output formats).

        Args:
            batched_inputs: dicts with ``image`` (3, H, W) RGB in 0-255 and optionally the output
                ``height`` and ``width`` (default: the image's own size).
            tasks: the outputs to compute; None: the configured ones (``self.tasks``).

        Returns:
            One dict per image with, as asked: ``sem_seg_labels`` (height, width) int64 class
            ids and ``sem_seg_confidence`` (height, width) their scores, or ``sem_seg`` (K,
            height, width) class scores (``TEST.SEMANTIC_OUTPUT`` "labels" or "scores");
            ``panoptic_seg`` (id map (height, width), segments_info); ``instances``.
        """
        if self.training:
            return self.losses(batched_inputs)
        images = self.preprocess(batched_inputs)
        dtype = self.autocast_dtype
        if dtype is not None and self.device.type == "cpu":
            warn_if_emulated(dtype, "MODEL.MAFT_PLUS.TEST.AUTOCAST")
        # nullcontext, not autocast(enabled=False): leave a caller's own autocast in force. The
        # pixel decoder disables it inside unless TEST.PIXEL_DECODER_AUTOCAST (its follow_autocast)
        with torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            outputs = self.predict(images.tensor, with_aux=False)
        outputs = {
            key: outputs[key].float()  # post-processing in float32 whatever the autocast
            for key in ("in_vocab_logits", "out_vocab_logits", "pred_masks")
        }
        return self.postprocess(outputs, images, batched_inputs, tasks or self.tasks)

    def losses(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        """Training losses for a batch whose dicts also hold ``instances`` (gt_classes, gt_masks).

        One trainable CLIP-V pass serves the proposal generator (detached), the region
        embeddings and CDT's tokens; the teacher runs once, without gradient, for L_rc.
        """
        if self.objective is None:
            raise RuntimeError(
                "this MAFTPlus was built for inference (no losses); build it with "
                "MAFTPlus(cfg, training=True) to train, or call model.eval()"
            )
        images = self.preprocess(batched_inputs)
        targets = self.prepare_targets(batched_inputs, tuple(images.tensor.shape[-2:]))
        outputs = self.predict(images.tensor)
        teacher_dense = self.teacher(images.tensor) if self.teacher is not None else None
        return self.objective(outputs, targets, outputs["clip_dense"], teacher_dense)

    def prepare_targets(
        self, batched_inputs: list[dict], padded_size: tuple[int, int]
    ) -> list[dict]:
        """Per image ``labels`` (N,) and ``masks`` (N, H, W) zero-padded to the batch's size."""
        targets = []
        for i, inputs in enumerate(batched_inputs):
            if "instances" not in inputs:
                raise ValueError(f"batched_inputs[{i}] has no 'instances': training needs targets")
            instances = inputs["instances"].to(self.device)
            masks = instances.gt_masks
            masks = masks.tensor if hasattr(masks, "tensor") else masks  # BitMasks or a tensor
            padded = masks.new_zeros((masks.shape[0], *padded_size))  # (N, H, W)
            padded[:, : masks.shape[1], : masks.shape[2]] = masks
            targets.append({"labels": instances.gt_classes, "masks": padded})
        return targets

    def predict(self, images: torch.Tensor, *, with_aux: bool = True) -> dict:
        """Both classifiers' logits and the mask logits for normalized padded images (B, 3, H, W).

        ``with_aux=False`` skips the earlier decoder layers' class predictions (only the
        auxiliary losses read them); the returned logits and masks are the same.

        Returns:
            ``in_vocab_logits`` (B, Q, K+1), ``out_vocab_logits`` (B, Q, K+1), ``pred_masks``
            (B, Q, H/4, W/4), the proposal generator's ``aux_outputs`` and ``clip_dense``, F3
            (B, C, h, w).
        """
        vocab = self.vocabulary
        text = TextClasses(
            embeds=self.text_embeddings(),  # (S+1, D)
            synonym_to_class=torch.tensor(vocab.synonym_to_class, device=self.device),  # (S,)
            num_classes=vocab.num_classes,
        )
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        # The proposal generator must not train CLIP-V: it sees detached backbone features.
        proposal_inputs = {name: features[name].detach() for name in PROPOSAL_INPUTS}
        proposals = self.sem_seg_head(proposal_inputs, text, with_aux=with_aux)
        mask_logits = proposals["pred_masks"]  # (B, Q, H/4, W/4)

        dense = features[DENSE_FEATURE]  # F3: (B, C, h, w)
        batch, num_queries = mask_logits.shape[:2]
        # Masks only select pixels: no gradient into the proposal generator from this branch.
        pooled = mask_pool(dense, mask_logits.detach())  # (B, Q, C)
        regions = self.backbone.region_head(pooled.reshape(batch * num_queries, -1, 1, 1))
        regions = F.normalize(regions.reshape(batch, num_queries, -1), dim=-1)  # (B, Q, D)
        text_hat = text.embeds.expand(batch, -1, -1)  # (B, S+1, D)
        if isinstance(self.cdt, TextMLPAdapter):
            text_hat = self.cdt(text_hat)  # (B, S+1, D), the same for every image
        elif self.cdt is not None:
            tokens = dense_to_tokens(dense, self.backbone.region_head, self.token_layout)
            text_hat = self.cdt(text_hat, tokens)  # (B, S+1, D), conditioned on each image
        # fp32 whatever the autocast: the scale (up to 100) would amplify bf16's rounding
        with torch.autocast(self.device.type, enabled=False):
            synonym_logits = self.backbone.logit_scale * torch.einsum(
                "bqd,bsd->bqs", regions.float(), text_hat.float()
            )  # (B, Q, S+1)
        out_vocab_logits = text.class_logits(synonym_logits)  # (B, Q, K+1)
        return {
            "in_vocab_logits": proposals["pred_logits"],
            "out_vocab_logits": out_vocab_logits,
            "pred_masks": mask_logits,
            "aux_outputs": proposals["aux_outputs"],
            "clip_dense": dense,
        }

    def postprocess(
        self, outputs: dict, images: ImageList, batched_inputs: list[dict], tasks: Tasks
    ) -> list[dict]:
        """Per-image results of ``tasks`` at each image's output size (``image_results``)."""
        probs = classification_probs(outputs["in_vocab_logits"], outputs["out_vocab_logits"])
        padded_size = tuple(images.tensor.shape[-2:])
        results = []
        for i, (class_probs, mask_logits) in enumerate(
            zip(probs, outputs["pred_masks"], strict=True)
        ):
            image_size = tuple(images.image_sizes[i])
            height = batched_inputs[i].get("height", image_size[0])
            width = batched_inputs[i].get("width", image_size[1])
            results.append(
                image_results(
                    class_probs,
                    mask_logits,
                    ImageSizes(padded_size, image_size, (height, width)),
                    is_thing=self.vocabulary.is_thing,
                    tasks=tasks,
                    options=self.inference_options,
                )
            )
        return results


def _drop_teacher_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """State-dict hook: remove the frozen teacher's entries."""
    for key in [k for k in state_dict if k.startswith(prefix + TEACHER_PREFIX)]:
        del state_dict[key]


def _ignore_missing_teacher_keys(module: nn.Module, incompatible_keys) -> None:
    """Load hook: a checkpoint never holds the teacher, so its keys are not "missing"."""
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not k.startswith(TEACHER_PREFIX)]
