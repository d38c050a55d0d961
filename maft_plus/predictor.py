"""Predictor: segment one image with your own class names, in a few lines of Python.

    from maft_plus.predictor import Predictor

    predictor = Predictor.from_preset("large-semantic", device="cuda")
    # or a folder / Hugging Face Hub repo with model.safetensors + config.yaml:
    # predictor = Predictor.from_pretrained("org/repo")
    prediction = predictor.predict("street.jpg", "car; person, pedestrian; road; sky")
    prediction.label_map        # (H, W) int32 class ids
    prediction.segments         # Segment(name="car", score=..., mask=(H, W) bool), ...

Shapes: H x W the original image (after EXIF orientation), K classes, N instances.
The predictor only converts the model's detectron2 outputs (``prediction.py``); post-processing
lives in ``maft_plus/modeling/postprocess/``; images are read by ``images.py``.
"""

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T

from .checkpoint import MAFTPlusCheckpointer
from .config import setup_cfg
from .data.vocabulary import Vocabulary
from .data.vocabulary.presets import parse_vocabulary
from .images import ImageInput, load_rgb
from .modeling.meta_arch import MAFTPlus
from .modeling.postprocess import Tasks
from .prediction import Prediction, Segment, enlarge, to_prediction
from .pretrained import resolve_pretrained
from .weights import resolve_weights

logger = logging.getLogger(__name__)

__all__ = [
    "PRESET_MODELS",
    "TASKS",
    "Prediction",
    "Predictor",
    "Segment",
    "load_rgb",
    "to_prediction",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
# Preset name -> config file, relative to the repository root (never the working directory).
PRESET_MODELS = {
    "large-semantic": "configs/semantic/maftp_l_eval.yaml",
    "base-semantic": "configs/semantic/maftp_b_eval.yaml",
    "large-panoptic": "configs/panoptic/maftp_l_pano_eval.yaml",
    "tiny": "configs/tiny/maftp_tiny.yaml",
}
# Task name -> the outputs the model computes for it.
TASKS = {
    "semantic": Tasks(semantic=True),
    "panoptic": Tasks(semantic=False, panoptic=True),
    "instance": Tasks(semantic=False, instance=True),
}

# Formats detectron2's checkpointer unpickles; .safetensors and .pth are read as tensors only.
PICKLE_SUFFIXES = (".pkl", ".pyth")
# Panoptic and instance outputs hold Q full-size float masks: above this many pixels they are
# computed at a proportionally smaller size and enlarged (nearest neighbour) to the image's.
MAX_MASK_OUTPUT_PIXELS = 2**22  # 2048 x 2048; 100 masks of it are 1.6 GiB


class Predictor:
    """An inference-only MAFTPlus with its weights, test-time resize and vocabulary handling."""

    def __init__(self, cfg: CfgNode, *, weights: str | None = None) -> None:
        """
        Args:
            cfg: a MAFT+ config (see ``maft_plus.config.setup_cfg``).
            weights: a ``.safetensors`` or ``.pth`` checkpoint (path, http(s) URL or hf:// id,
                see ``resolve_weights``);
                default ``cfg.MODEL.WEIGHTS`` (a relative path there is also looked up under the
                repository root); with neither, the model keeps its pretrained CLIP only.
        """
        device = torch.device(cfg.MODEL.DEVICE)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA device is available; "
                "use device='cpu' (from_preset) or opts=['MODEL.DEVICE', 'cpu']"
            )
        self.cfg = cfg
        self.model = MAFTPlus(cfg).to(device)  # from_config with training=False: no losses
        spec = weights or _config_weights(cfg.MODEL.WEIGHTS)
        if spec:
            path = resolve_weights(spec)
            if path.suffix in PICKLE_SUFFIXES:  # detectron2 would unpickle these (runs code)
                raise ValueError(
                    f"{path}: MAFT+ weights are .safetensors or PyTorch .pth files read as "
                    f"tensors only; {path.suffix} files are pickles, which can run code, and are "
                    "not loaded"
                )
            MAFTPlusCheckpointer(self.model).load(str(path))
            logger.info("loaded weights from %s", path)
        else:
            logger.warning(
                "no weights given (weights=None, MODEL.WEIGHTS empty): only the pretrained CLIP "
                "(%s) is loaded; the proposal generator and CDT are untrained",
                cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED or "random init",
            )
        self.model.eval()
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        weights: str | None = None,
        device: str | None = None,
        opts: Sequence[str] = (),
    ) -> "Predictor":
        """A predictor for a ``PRESET_MODELS`` name; ``device`` None: "cuda" if available."""
        if name not in PRESET_MODELS:
            raise ValueError(
                f"unknown preset model {name!r}; choose from {', '.join(PRESET_MODELS)}"
            )
        configs = REPO_ROOT / "configs"
        if not configs.is_dir():
            raise FileNotFoundError(
                f"the preset configs are read from {configs}, which does not exist (is maft_plus "
                "installed without its repository?); use Predictor.from_config with a config file"
            )
        opts = [*opts, "MODEL.DEVICE", device or _default_device()]
        return cls.from_config(REPO_ROOT / PRESET_MODELS[name], weights=weights, opts=opts)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        device: str | None = None,
        opts: Sequence[str] = (),
        cache_dir: str | os.PathLike | None = None,
    ) -> "Predictor":
        """A predictor from a folder or Hugging Face Hub repo holding model.safetensors and
        config.yaml (as ``tools/convert_weights.py`` writes them).

        Args:
            name_or_path: a local folder, or a Hub repo id "org/repo" (fetched into the Hugging
                Face cache; with ``HF_HUB_OFFLINE`` set, only the cache is read).
            revision: a Hub branch, tag or commit hash (default: main).
            device: "cuda", "cpu", ...; None: "cuda" if available, else "cpu".
            opts: KEY VALUE config overrides, applied over config.yaml.
            cache_dir: the Hugging Face cache folder (default: huggingface_hub's own).

        See ``maft_plus.pretrained.resolve_pretrained`` for the errors.
        """
        files = resolve_pretrained(name_or_path, revision=revision, cache_dir=cache_dir)
        opts = [*opts, "MODEL.DEVICE", device or _default_device()]
        return cls(setup_cfg(str(files.config), opts), weights=str(files.weights))

    @classmethod
    def from_config(
        cls, config_file: str | os.PathLike, *, weights: str | None = None, opts: Sequence[str] = ()
    ) -> "Predictor":
        """A predictor from a config file and KEY VALUE ``opts``."""
        return cls(setup_cfg(str(config_file), opts), weights=weights)

    def predict(
        self,
        image: ImageInput,
        vocabulary: str | Sequence[str],
        task: str = "semantic",
        *,
        min_score: float = 0.0,
    ) -> Prediction:
        """Segment one image into the classes of ``vocabulary``.

        Args:
            image: an (H, W, 3) uint8 RGB array, a PIL image or an image file path.
            vocabulary: anything ``parse_vocabulary`` accepts: a preset ("coco", "ade150", ...),
                a vocabulary file, free text ("cat, kitty; dog; sky") or a list of class strings.
            task: "semantic", "panoptic" or "instance".
            min_score: instance task: drop instances scoring below this (the model always
                returns its top 100 (query, class) pairs).

        Images of any size work. Semantic output is computed at the image's size with memory
        that does not depend on it beyond a few (H, W) maps; panoptic and instance outputs of an
        image over ``MAX_MASK_OUTPUT_PIXELS`` are computed at that many pixels and enlarged.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        rgb = load_rgb(image)  # (H, W, 3) uint8
        self._set_vocabulary(vocabulary)
        height, width = rgb.shape[:2]
        out_height, out_width = height, width
        if task != "semantic" and height * width > MAX_MASK_OUTPUT_PIXELS:
            scale = math.sqrt(MAX_MASK_OUTPUT_PIXELS / (height * width))
            out_height, out_width = max(1, int(height * scale)), max(1, int(width * scale))
            logger.info(
                "%dx%d image: %s masks computed at %dx%d and enlarged (nearest neighbour)",
                width,
                height,
                task,
                out_width,
                out_height,
            )
        resized = self.resize.get_transform(rgb).apply_image(rgb)  # (h, w, 3)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))  # (3, h, w)
        inputs = [{"image": tensor, "height": out_height, "width": out_width}]
        with torch.no_grad():
            output = self.model(inputs, tasks=TASKS[task])[0]
        prediction = to_prediction(output, self.model.vocabulary, task, min_score=min_score)
        if (out_height, out_width) != (height, width):
            prediction = enlarge(prediction, height, width)
        return prediction

    def _set_vocabulary(self, vocabulary: str | Sequence[str]) -> None:
        """Parse ``vocabulary`` and set it on the model unless it is already the current one."""
        names, is_thing = parse_vocabulary(vocabulary)
        parsed = Vocabulary.from_names(names, is_thing)
        if parsed != self.model.vocabulary:
            self.model.set_vocabulary(parsed)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _config_weights(config_weights: str) -> str:
    """MODEL.WEIGHTS, a relative path tried as given, then under the repository root."""
    if not config_weights or "://" in config_weights or os.path.isabs(config_weights):
        return config_weights
    if not os.path.exists(config_weights) and (REPO_ROOT / config_weights).is_file():
        return str(REPO_ROOT / config_weights)
    return config_weights
