"""add_maft_plus_config(cfg): every MAFT+ config key, typed and commented.

Paper symbols refer to Jiao et al., ECCV 2024. Defaults reproduce the released Large semantic
checkpoint (``docs/design.md``); the paper's variants are named values of these keys.
"""

import os
from collections.abc import Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

# CLIP's image normalization (RGB, 0-255), design.md section 1.
CLIP_PIXEL_MEAN = [122.7709383, 116.7460125, 104.09373615]
CLIP_PIXEL_STD = [68.5005327, 66.6321579, 70.32316305]


def add_maft_plus_config(cfg: CN) -> None:
    """Add the MAFT+ keys (``cfg.MODEL.MAFT_PLUS``) and set detectron2 keys to MAFT+ defaults."""
    cfg.MODEL.META_ARCHITECTURE = "MAFTPlus"
    cfg.MODEL.BACKBONE.NAME = "CLIPConvNeXt"
    cfg.MODEL.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)
    cfg.MODEL.PIXEL_STD = list(CLIP_PIXEL_STD)
    cfg.INPUT.MIN_SIZE_TEST = 800  # test resize: shortest edge 800 ...
    cfg.INPUT.MAX_SIZE_TEST = 1333  # ... longest edge at most 1333
    cfg.INPUT.FORMAT = "RGB"  # CLIP's channel order
    # Your own datasets, registered by train_net.py and the tools before DATASETS.TRAIN/TEST are
    # read: one "name=NAME images=DIR labels=DIR classes=FILE [ignore_label=255]" string each
    # (panoptic: panoptic_json=FILE panoptic_pngs=DIR); maft_plus/data/datasets/register_folder.py.
    cfg.DATASETS.FOLDERS = []
    # A training sample whose files cannot be used (unreadable or corrupt image, label of the wrong
    # size, ...) is logged and skipped (maft_plus/data/skipped_samples.py). The run stops when more
    # than this share of the samples met were skipped (1.0: never) ...
    cfg.DATALOADER.MAX_SKIPPED_FRACTION = 0.01
    # ... and at least this many were: a few bad files early on do not stop a run.
    cfg.DATALOADER.MIN_SKIPPED_TO_STOP = 10

    m = cfg.MODEL.MAFT_PLUS = CN()
    # open_clip architecture of CLIP-V and the text tower: convnext_large_d_320 (Large, D=768),
    # convnext_base_w_320 (Base, D=640), or a tiny test model (maftp-tiny-convnext-mlp/-linear).
    m.CLIP_MODEL_NAME = "convnext_large_d_320"
    # open_clip pretrained tag or a local CLIP weight file; "" builds random weights (tests).
    m.CLIP_PRETRAINED = "laion2b_s29b_b131k_ft_soup"
    # Class names the registered benchmarks give the model, in training and evaluation:
    # "reference", the prompt-engineered lists (names + synonyms) the released checkpoints were
    # trained and scored with, or "plain", the datasets' own names that other papers report with.
    m.CLASS_NAMES = "reference"
    # Sentences per text-encoder batch when embedding a vocabulary (memory vs. speed only).
    m.TEXT_BATCH_SIZE = 256
    # Network inputs are zero-padded (after normalization) to a multiple of this.
    m.SIZE_DIVISIBILITY = 32
    # Keep CLIP-V's weights and inputs channels-last (NHWC): faster convolutions on recent GPUs;
    # the same values either way.
    m.CHANNELS_LAST = False

    # Which ConvNeXt stages of CLIP-V are fine-tuned (the stem trains with stage 0); [] freezes
    # CLIP-V entirely (the "frozen CLIP" baseline of paper Table 3; Table 5a varies it).
    m.CLIP_TRAINABLE_STAGES = [0, 1, 2, 3]

    # Mask2Former pixel decoder (multi-scale deformable attention on res3..res5, FPN step to res2).
    m.PIXEL_DECODER = CN()
    m.PIXEL_DECODER.CONV_DIM = 256  # channels of the encoder and of the multi-scale maps
    m.PIXEL_DECODER.MASK_DIM = 256  # channels of the stride-4 mask features
    m.PIXEL_DECODER.NUM_ENCODER_LAYERS = 6  # deformable encoder layers
    m.PIXEL_DECODER.NUM_HEADS = 8  # deformable attention heads
    m.PIXEL_DECODER.NUM_POINTS = 4  # sampling points per head and level
    m.PIXEL_DECODER.DIM_FEEDFORWARD = 1024  # encoder FFN width
    m.PIXEL_DECODER.NUM_GROUPS = 32  # GroupNorm groups in the projections and FPN convs

    # Mask2Former masked-attention transformer decoder with the in-vocabulary class head.
    m.DECODER = CN()
    m.DECODER.HIDDEN_DIM = 256  # query width (must equal PIXEL_DECODER.CONV_DIM)
    m.DECODER.NUM_QUERIES = 100  # proposals per image (N in the paper)
    m.DECODER.NUM_HEADS = 8  # attention heads
    m.DECODER.DIM_FEEDFORWARD = 2048  # FFN width
    m.DECODER.NUM_LAYERS = 9  # decoder layers (3 rounds over strides 32, 16, 8)

    # Content-Dependent Transfer (paper section 4.3): text embeddings attend to CLIP image tokens.
    m.CDT = CN()
    # "cross_attention": CDT; "mlp": a content-independent MLP on the text (paper Table 4).
    m.CDT.TYPE = "cross_attention"
    # cross-attention layers: 1 in the released weights, 2 in the paper, 0 = no CDT (Table 3)
    m.CDT.NUM_LAYERS = 1
    m.CDT.NUM_HEADS = 8  # attention heads
    # "post_norm": T_hat = LN(T + Linear(attn)) (semantic checkpoints); "branch_norm":
    # T_hat = T + LN(Linear(attn)) with the Linear zero-initialized (panoptic checkpoint).
    m.CDT.RESIDUAL = "post_norm"
    # "legacy": the released reshape of F3 into tokens without moving channels last (the released
    # weights need it); "per_pixel": one token per pixel, for new training.
    m.CDT.TOKEN_LAYOUT = "legacy"

    # Large-scale jitter of panoptic training (paper: COCO-Panoptic at 1024).
    m.LSJ = CN()
    m.LSJ.IMAGE_SIZE = 1024  # side of the square training crop
    m.LSJ.MIN_SCALE = 0.1  # smallest resize factor of the jitter
    m.LSJ.MAX_SCALE = 2.0  # largest resize factor of the jitter

    # Training losses (design.md section 7). The proposal generator's set loss on the in-vocabulary
    # outputs: Hungarian matching on point-sampled costs, then weighted losses.
    m.LOSS = CN()
    m.LOSS.CLASS_WEIGHT = 2.0  # cross-entropy weight (and matching cost)
    m.LOSS.MASK_WEIGHT = 5.0  # sigmoid BCE weight on sampled points (and matching cost)
    m.LOSS.DICE_WEIGHT = 5.0  # dice weight (and matching cost)
    m.LOSS.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the void class
    m.LOSS.NUM_POINTS = 12544  # points sampled per mask for matching and losses
    m.LOSS.OVERSAMPLE_RATIO = 3.0  # importance sampling: candidates per kept point
    m.LOSS.IMPORTANCE_SAMPLE_RATIO = 0.75  # importance sampling: share of uncertain points
    m.LOSS.DEEP_SUPERVISION = True  # also supervise every earlier decoder prediction
    m.LOSS.MA_WEIGHT = 1.0  # mask-aware loss L_ma (paper eq. 6); 0 disables it
    # L_ma per class keeps only the best-IoU instance (the paper's panoptic variant)
    m.LOSS.MA_BEST_INSTANCE = False
    m.LOSS.RC_WEIGHT = 0.1  # Representation Compensation L_rc; 0 disables it (and the teacher)
    # "released": ReLU + pooled row/column sums; "paper": plain average-pool grids.
    m.LOSS.RC_VARIANT = "released"
    m.LOSS.RC_SCALES = [1, 2, 4]  # pooling grids (released: kernel = width // s)

    # Optimizer and schedule beyond detectron2's SOLVER keys.
    m.SOLVER = CN()
    m.SOLVER.BACKBONE_MULTIPLIER = 0.1  # learning-rate factor of CLIP-V's trainable stages
    m.SOLVER.WEIGHT_DECAY_NORM = 0.0  # weight decay of normalization layers
    m.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of embeddings (queries, void, levels)
    m.SOLVER.POLY_POWER = 0.9  # SOLVER.LR_SCHEDULER_NAME "WarmupPolyLR": lr ~ (1 - it/max) ** power

    # Inference (paper section 4.4 / Mask2Former post-processing).
    m.TEST = CN()
    m.TEST.SEMANTIC_ON = True  # semantic output, in the form SEMANTIC_OUTPUT names
    # "labels": "sem_seg_labels" (height, width) int64 argmax class and "sem_seg_confidence" (its
    # score); memory does not grow with the classes. "scores": detectron2's "sem_seg" (K, height,
    # width) class scores, K times the memory (what detectron2's own SemSegEvaluator reads).
    m.TEST.SEMANTIC_OUTPUT = "labels"
    m.TEST.PANOPTIC_ON = False  # output "panoptic_seg": (id map, segments_info)
    m.TEST.INSTANCE_ON = False  # output "instances": detectron2 Instances
    m.TEST.OBJECT_MASK_THRESHOLD = 0.2  # panoptic: minimum class score of a kept query
    m.TEST.OVERLAP_THRESHOLD = 0.7  # panoptic: minimum visible fraction of a kept mask
    m.TEST.INSTANCE_TOP_K = 100  # instance: (query, class) pairs kept per image
    m.TEST.SEMANTIC_CHUNK_SIZE = 64  # semantic: classes upsampled at once (memory only)
    # Inference under torch.autocast in "bfloat16" or "float16"; "" runs in float32. The pixel
    # decoder stays in float32 (as released, unless PIXEL_DECODER_AUTOCAST) and post-processing
    # runs on float32 logits. A CPU without native 16-bit products emulates them (AVX2 only: over
    # 100x slower than float32); the model warns once there (maft_plus/native_precision.py).
    m.TEST.AUTOCAST = ""
    # The bfloat16 fast path: at inference the pixel decoder runs under the autocast in force
    # (AUTOCAST's or the caller's) instead of in float32; its sampling locations, attention
    # softmax and position encodings stay float32. Fast only where bfloat16 is native (a GPU, or a
    # CPU with AVX-512-BF16 or AMX); with no autocast in force it changes nothing.
    m.TEST.PIXEL_DECODER_AUTOCAST = False


def setup_cfg(config_file: str = "", opts: Sequence[str] = ()) -> CN:
    """A frozen config: defaults, MAFT+ keys, then ``config_file`` and KEY VALUE ``opts``."""
    cfg = get_cfg()
    add_maft_plus_config(cfg)
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file not found: {config_file}")
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg
