"""What tools/benchmark.py measures: the config, the model and its vocabulary, random inputs."""

import argparse
import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F
from detectron2.structures import Instances

from maft_plus.config import setup_cfg
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary
from maft_plus.data.vocabulary.presets import parse_vocabulary
from maft_plus.modeling import MAFTPlus

REPO = Path(__file__).resolve().parents[1]


def synthetic_names(num_classes: int) -> list[str]:
    """``num_classes`` made-up classes with the reference ADE-150 list's synonym counts, cycled."""
    counts = [len(n.split(",")) for n in read_builtin_vocabulary("ade150")]
    return [
        ", ".join(f"class{k} synonym{j}" for j in range(counts[k % len(counts)]))
        for k in range(num_classes)
    ]


def vocabulary_names(spec: str) -> tuple[list[str], str]:
    """Class strings for ``spec`` and where they came from."""
    if spec.isdigit():
        return synthetic_names(int(spec)), f"{spec} synthetic classes"
    return parse_vocabulary(spec)[0], spec


def random_text_embedder(dim: int, device: torch.device):
    """A stand-in for the text embedder: fixed random unit rows per synonym (random CLIP only)."""
    cache: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(0)

    def embed(vocabulary: Vocabulary) -> torch.Tensor:
        for name in vocabulary.synonyms:
            if name not in cache:
                cache[name] = F.normalize(torch.randn(dim, generator=generator), dim=0).to(device)
        return torch.stack([cache[name] for name in vocabulary.synonyms])  # (S, D)

    return embed


def prepare_text(model: MAFTPlus, cfg) -> str:
    """Make the text rows of the current vocabulary ready before timing; say how."""
    if not cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED:
        model.text_embedder = random_text_embedder(model.backbone.embed_dim, model.device)
        model.text_embeddings()
        return "random CLIP: random unit text rows, prepared before timing (text tower not timed)"
    model.text_embeddings()  # fills the per-synonym cache
    return "encoded and cached before timing (text tower not timed)"


def random_targets(batch: int, size: int, segments: int, num_classes: int) -> list[dict]:
    """Random images with ``segments`` blocky segments of distinct random classes each."""
    inputs = []
    for _ in range(batch):
        cells = torch.randint(0, segments, (1, 1, max(size // 8, 1), max(size // 8, 1)))
        ids = F.interpolate(cells.float(), size=(size, size), mode="nearest")[0, 0].long()
        masks = ids[None] == torch.arange(segments)[:, None, None]  # (N, H, W)
        masks = masks[masks.flatten(1).any(dim=1)]
        instances = Instances((size, size))
        instances.gt_classes = torch.randperm(num_classes)[: masks.shape[0]]
        instances.gt_masks = masks
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        inputs.append({"image": image, "instances": instances})
    return inputs


def autocast(args: argparse.Namespace):
    if args.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    return torch.autocast(device_type=args.device, dtype=dtype)


def build_cfg(args: argparse.Namespace):
    config = Path(args.config_file)
    if not config.is_file() and (REPO / config).is_file():
        config = REPO / config
    opts = ["MODEL.MAFT_PLUS.CLIP_PRETRAINED", "", "MODEL.DEVICE", args.device]
    opts += ["MODEL.MAFT_PLUS.CHANNELS_LAST", str(args.channels_last)]
    if args.amp != "none":  # inference autocasts itself; training steps run under autocast()
        opts += ["MODEL.MAFT_PLUS.TEST.AUTOCAST", {"bf16": "bfloat16", "fp16": "float16"}[args.amp]]
    return setup_cfg(str(config), [*opts, *args.opts])


def build_model(args: argparse.Namespace, cfg, spec: str, training: bool):
    model = MAFTPlus(cfg, training=training).to(torch.device(args.device))
    model.train(training)
    names, source = vocabulary_names(spec)
    model.set_vocabulary(names)
    text_note = prepare_text(model, cfg)
    vocab = model.vocabulary
    info = {"vocabulary": source, "num_classes": vocab.num_classes}
    return model, {**info, "num_synonyms": vocab.num_synonyms, "text_embeddings": text_note}
