"""Predictor: segment one image with your own class names, in a few lines of Python.

    from maft_plus.predictor import Predictor

    predictor = Predictor.from_preset("large-semantic", device="cuda")
    prediction = predictor.predict("street.jpg", "car; person, pedestrian; road; sky")
    prediction.label_map        # (H, W) int32 class ids
    prediction.segments         # Segment(name="car", score=..., mask=(H, W) bool), ...

Shapes: H x W the original image (after EXIF orientation), K classes, N instances.
The predictor only converts the model's detectron2 outputs; post-processing lives in
``maft_plus/modeling/postprocess.py``.
"""

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from PIL import Image, ImageOps, UnidentifiedImageError

from .checkpoint import MAFTPlusCheckpointer
from .config import setup_cfg
from .data.vocabulary import Vocabulary
from .data.vocabulary_presets import parse_vocabulary
from .modeling.meta_arch import MAFTPlus
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
# Task -> (semantic_on, panoptic_on, instance_on) for the call.
TASKS = {
    "semantic": (True, False, False),
    "panoptic": (False, True, False),
    "instance": (False, False, True),
}

PICKLE_SUFFIXES = (".pkl", ".pyth")  # formats detectron2's checkpointer unpickles
# Panoptic and instance outputs hold Q full-size float masks: above this many pixels they are
# computed at a proportionally smaller size and enlarged (nearest neighbour) to the image's.
MAX_MASK_OUTPUT_PIXELS = 2**22  # 2048 x 2048; 100 masks of it are 1.6 GiB

ImageInput = np.ndarray | Image.Image | str | os.PathLike


@dataclass
class Segment:
    """One region of a prediction.

    Attributes:
        id: semantic: the class id; panoptic: the segment id in ``segment_map``; instance: the
            instance's 1-based rank in the model's output.
        label: class id, an index into ``Prediction.class_names``.
        name: the class's display name (its first synonym).
        score: semantic: the mean score of the class over the segment's pixels; panoptic: the
            class probability of the segment's query; instance: the instance score.
        is_thing: whether the class is a thing (else stuff) in the vocabulary.
        mask: (H, W) bool pixels of the segment.
    """

    id: int
    label: int
    name: str
    score: float
    is_thing: bool
    mask: np.ndarray


@dataclass
class Prediction:
    """The result of :meth:`Predictor.predict`, at the original image size.

    Attributes:
        task: "semantic", "panoptic" or "instance".
        label_map: (H, W) int32 class id of each pixel. Semantic: the argmax of the class scores;
            panoptic: the class of the pixel's segment, -1 where none; instance: the class of the
            highest-scoring instance covering the pixel, -1 where none.
        segments: semantic: one per class present in ``label_map``; panoptic: one per segment;
            instance: one per instance (masks may overlap), in the model's order.
        class_names: the K class display names of the vocabulary (first synonyms), by class id.
        segment_map: panoptic only: (H, W) int32 segment ids, 0 = no segment.
    """

    task: str
    label_map: np.ndarray
    segments: list[Segment]
    class_names: list[str]
    segment_map: np.ndarray | None = None


class Predictor:
    """An inference-only MAFTPlus with its weights, test-time resize and vocabulary handling."""

    def __init__(self, cfg: CfgNode, *, weights: str | None = None) -> None:
        """
        Args:
            cfg: a MAFT+ config (see ``maft_plus.config.setup_cfg``).
            weights: a checkpoint (path, http(s) URL or hf:// id, see ``resolve_weights``);
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
                    f"{path}: MAFT+ weights are PyTorch .pth files read as tensors only; "
                    f"{path.suffix} files are pickles, which can run code, and are not loaded"
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
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        opts = [*opts, "MODEL.DEVICE", device]
        return cls.from_config(REPO_ROOT / PRESET_MODELS[name], weights=weights, opts=opts)

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
        flags = (self.model.semantic_on, self.model.panoptic_on, self.model.instance_on)
        try:
            self.model.semantic_on, self.model.panoptic_on, self.model.instance_on = TASKS[task]
            with torch.no_grad():
                output = self.model(inputs)[0]
        finally:
            self.model.semantic_on, self.model.panoptic_on, self.model.instance_on = flags
        prediction = to_prediction(output, self.model.vocabulary, task, min_score=min_score)
        if (out_height, out_width) != (height, width):
            prediction = _enlarge(prediction, height, width)
        return prediction

    def _set_vocabulary(self, vocabulary: str | Sequence[str]) -> None:
        """Parse ``vocabulary`` and set it on the model unless it is already the current one."""
        names, is_thing = parse_vocabulary(vocabulary)
        parsed = Vocabulary.from_names(names, is_thing)
        if parsed != self.model.vocabulary:
            self.model.set_vocabulary(names, is_thing)


def _enlarge(prediction: Prediction, height: int, width: int) -> Prediction:
    """``prediction`` with every map and mask enlarged to (height, width), nearest neighbour."""
    small_h, small_w = prediction.label_map.shape
    rows = ((np.arange(height) + 0.5) * small_h / height).astype(np.int64)  # (H,) source rows
    cols = ((np.arange(width) + 0.5) * small_w / width).astype(np.int64)  # (W,) source columns
    rows, cols = np.minimum(rows, small_h - 1)[:, None], np.minimum(cols, small_w - 1)[None, :]
    segments = [
        Segment(s.id, s.label, s.name, s.score, s.is_thing, s.mask[rows, cols])  # (H, W)
        for s in prediction.segments
    ]
    segment_map = prediction.segment_map
    return Prediction(
        prediction.task,
        prediction.label_map[rows, cols],  # (H, W)
        segments,
        prediction.class_names,
        None if segment_map is None else segment_map[rows, cols],  # (H, W)
    )


def _config_weights(config_weights: str) -> str:
    """MODEL.WEIGHTS, a relative path tried as given, then under the repository root."""
    if not config_weights or "://" in config_weights or os.path.isabs(config_weights):
        return config_weights
    if not os.path.exists(config_weights) and (REPO_ROOT / config_weights).is_file():
        return str(REPO_ROOT / config_weights)
    return config_weights


def load_rgb(image: ImageInput) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an array, a PIL image or an image file path.

    PIL images are turned upright by their EXIF orientation and converted to RGB (grayscale is
    replicated, 16-bit grayscale scaled to 8 bits, palettes looked up, an alpha channel dropped).
    """
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                return _pil_to_rgb(opened)
        except Image.DecompressionBombError as exc:  # PIL refuses > 2 * MAX_IMAGE_PIXELS
            raise ValueError(
                f"the image {path} has more pixels than PIL opens by default ({exc}); if the file "
                "is trusted, raise PIL.Image.MAX_IMAGE_PIXELS before predicting"
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # PIL's decoding errors
            raise ValueError(f"could not read the image {path}: {exc}") from exc
    raise TypeError(
        "an image is an (H, W, 3) uint8 RGB numpy array, a PIL image or a file path, got "
        f"{type(image).__name__}"
    )


def _check_array(image: np.ndarray) -> np.ndarray:
    """``image`` if it is a non-empty (H, W, 3) uint8 array, else a ValueError."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"an image array must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}; "
            "convert other images with PIL (Image.fromarray(a).convert('RGB'))"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty: shape {image.shape}")
    return image


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)  # upright, as viewers show it
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit (or int) grayscale
        # PIL's own conversion clips at 255 (a white image); scale 0..65535 to 0..255 instead
        gray = np.asarray(image).astype(np.float64) / 257.0  # (H, W)
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return _check_array(np.repeat(gray[:, :, None], 3, axis=2))  # (H, W, 3)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL converts transparent palettes through RGBA
    return _check_array(np.asarray(image.convert("RGB")))  # (H, W, 3) uint8


def to_prediction(
    output: dict, vocabulary: Vocabulary, task: str, *, min_score: float = 0.0
) -> Prediction:
    """Convert one image's MAFTPlus output dict (detectron2 format) into a :class:`Prediction`.

    Args:
        output: semantic: ``sem_seg_labels`` (H, W) with ``sem_seg_confidence`` (H, W), or
            ``sem_seg`` (K, H, W) scores; panoptic: ``panoptic_seg`` ((H, W) ids,
            segments_info with scores); instance: ``instances``.
        vocabulary: the K classes the model segmented.
        task: "semantic", "panoptic" or "instance".
        min_score: instance task: the lowest instance score kept.
    """
    if task == "semantic":
        if "sem_seg_labels" in output:
            labels, scores = output["sem_seg_labels"], output["sem_seg_confidence"]
        else:
            scores, labels = output["sem_seg"].max(dim=0)  # (H, W), (H, W)
        return _semantic_prediction(labels, scores, vocabulary)
    if task == "panoptic":
        return _panoptic_prediction(output["panoptic_seg"], vocabulary)
    if task == "instance":
        instances = output["instances"]
        return _instance_prediction(instances[instances.scores >= min_score], vocabulary)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def _semantic_prediction(labels: torch.Tensor, scores: torch.Tensor, vocab: Vocabulary):
    """labels: (H, W) class ids; scores: (H, W) their scores. A segment's score is the mean."""
    num_classes = vocab.num_classes
    counts = torch.bincount(labels.flatten(), minlength=num_classes)  # (K,)
    sums = torch.bincount(
        labels.flatten(), weights=scores.flatten().double(), minlength=num_classes
    )  # (K,) sum of each class's score over its pixels
    label_map = labels.to(torch.int32).cpu().numpy()
    segments = [
        _segment(k, k, float(sums[k] / counts[k]), label_map == k, vocab)
        for k in torch.nonzero(counts).flatten().tolist()
    ]
    return Prediction("semantic", label_map, segments, list(vocab.class_names))


def _panoptic_prediction(
    panoptic_seg: tuple[torch.Tensor, list[dict]], vocab: Vocabulary
) -> Prediction:
    """panoptic_seg: ((H, W) segment ids, segments_info with each segment's class score)."""
    segment_ids, segments_info = panoptic_seg
    segment_map = segment_ids.to(torch.int32).cpu().numpy()
    label_map = np.full(segment_map.shape, -1, dtype=np.int32)
    segments = []
    for info in segments_info:
        label = int(info["category_id"])
        pixels = segment_ids == info["id"]  # (H, W) on the model's device
        score = float(info["score"])
        mask = pixels.cpu().numpy()
        label_map[mask] = label
        segments.append(_segment(int(info["id"]), label, score, mask, vocab))
    return Prediction("panoptic", label_map, segments, list(vocab.class_names), segment_map)


def _instance_prediction(instances, vocab: Vocabulary) -> Prediction:
    """instances: detectron2 Instances with pred_masks (N, H, W), scores (N,), pred_classes."""
    masks = instances.pred_masks.cpu().numpy()  # (N, H, W) bool
    scores = instances.scores.cpu().tolist()
    labels = instances.pred_classes.cpu().tolist()
    label_map = np.full(instances.image_size, -1, dtype=np.int32)
    # Paint from the lowest score up so the best instance wins (the earlier one on a tie).
    for n in sorted(range(len(scores)), key=lambda n: (scores[n], -n)):
        label_map[masks[n]] = labels[n]
    segments = [_segment(n + 1, labels[n], scores[n], masks[n], vocab) for n in range(len(scores))]
    return Prediction("instance", label_map, segments, list(vocab.class_names))


def _segment(segment_id: int, label: int, score: float, mask: np.ndarray, vocab: Vocabulary):
    return Segment(
        id=segment_id,
        label=label,
        name=vocab.class_names[label],
        score=score,
        is_thing=vocab.is_thing[label],
        mask=mask,
    )
