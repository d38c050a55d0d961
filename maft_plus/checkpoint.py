"""Loading the released MAFT+ checkpoints (and our own) into MAFTPlus, strictly and safely.

The released files are flat state dicts, possibly wrapped as ``{"model": ...}`` and possibly with
a ``module.`` prefix (design.md section 10). Every key either loads into a parameter of ours
(renamed by ``OFFICIAL_TO_OURS`` where our names differ), or is dropped for a documented reason
(``IGNORED_PREFIXES``); every parameter of ours is set, except the text tower, which a released
file may omit and which then keeps the open_clip pretrained weights (``OPTIONAL_PREFIXES``).
Anything else is an error that names the keys. Files are read as tensors only (no pickled code):
``.pth`` files with ``torch.load(weights_only=True)``, ``.safetensors`` files with safetensors,
which holds nothing but tensors (``maft_plus/safetensors_weights.py`` writes them).
"""

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn

from .files import write_atomically
from .modeling.meta_arch import MAFTPlus

logger = logging.getLogger(__name__)

# Official name prefix -> our name prefix; the only places where our module names differ.
OFFICIAL_TO_OURS = (
    ("cdt.cross_atten.multihead_attn.", "cdt.layers.0.attn."),
    ("cdt.cross_atten.MLP.", "cdt.layers.0.proj."),
    ("cdt.cross_atten.norm.", "cdt.layers.0.norm."),
)
# Keys dropped on load, and why.
IGNORED_PREFIXES = {
    "backbone_t.": "the frozen teacher CLIP-V, used only by a training loss and rebuilt then",
    "criterion.": "the loss's class weights, rebuilt from the config",
}
# Our keys that a file may lack: CLIP's frozen text tower (then from the pretrained tag).
OPTIONAL_PREFIXES = tuple(
    f"backbone.clip_model.{name}"
    for name in (
        "token_embedding.",
        "positional_embedding",
        "transformer.",
        "ln_final.",
        "text_projection",
        "logit_scale",
    )
)
SAFETENSORS_SUFFIX = ".safetensors"


def convert_official_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap, strip ``module.``, drop ignored keys and rename official keys to ours.

    Idempotent: a state dict already in our naming passes through unchanged.
    """
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            "a MAFT+ checkpoint must be a non-empty state dict or {'model': state dict}"
        )
    converted = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        ours = official_to_ours(key)
        if ours is not None:
            converted[ours] = value
    return converted


def official_to_ours(key: str) -> str | None:
    """Our name for a checkpoint key, or None for a key dropped on load (``IGNORED_PREFIXES``)."""
    key = key.removeprefix("module.")
    if key.startswith(tuple(IGNORED_PREFIXES)):
        return None
    for official, ours in OFFICIAL_TO_OURS:
        if key.startswith(official):
            return ours + key.removeprefix(official)
    return key


def _describe_model_size(shapes: Mapping[str, tuple[int, ...]]) -> str:
    void = shapes.get("void_embedding.weight")
    return f"D={void[-1]}" if void else "unknown D"


def check_compatible(
    model_shapes: Mapping[str, tuple[int, ...]], state_shapes: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """Raise a clear error unless a converted state dict fits the model.

    Args:
        model_shapes: our model's state-dict shapes by key.
        state_shapes: the converted checkpoint's shapes by key.

    Returns:
        The model keys the file leaves to their current values (only ``OPTIONAL_PREFIXES``).
    """
    wrong = [
        (k, tuple(state_shapes[k]), tuple(model_shapes[k]))
        for k in state_shapes
        if k in model_shapes and tuple(state_shapes[k]) != tuple(model_shapes[k])
    ]
    if wrong:
        listed = "; ".join(f"{k}: file {a} vs model {b}" for k, a, b in wrong[:5])
        raise ValueError(
            f"the checkpoint does not fit this model ({len(wrong)} mismatched shapes: {listed}). "
            f"The file is for a model with {_describe_model_size(state_shapes)}, the config builds "
            f"{_describe_model_size(model_shapes)}: pick the config matching the checkpoint "
            "(Large: convnext_large_d_320, Base: convnext_base_w_320)."
        )
    unexpected = sorted(set(state_shapes) - set(model_shapes))
    if unexpected:
        raise ValueError(
            f"the checkpoint has {len(unexpected)} keys this model does not: {unexpected[:10]}"
        )
    missing = sorted(set(model_shapes) - set(state_shapes))
    required = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES)]
    if required:
        raise ValueError(f"the checkpoint lacks {len(required)} model keys: {required[:10]}")
    return missing


def load_state_dict_file(path: str, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Read a checkpoint file; tensors only unless ``allow_pickle`` (runs code from the file).

    A ``.safetensors`` file is read by :func:`load_safetensors_file` (never unpickled, whatever
    ``allow_pickle`` says); anything else with ``torch.load``.
    """
    if str(path).endswith(SAFETENSORS_SUFFIX):
        return load_safetensors_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # torch raises several kinds for truncated or foreign files
        raise ValueError(
            f"could not read the checkpoint {path}: {exc}. It may be truncated or not a PyTorch "
            "file; files holding more than tensors need allow_pickle=True (only for trusted files)."
        ) from exc


def load_safetensors_file(path: str) -> dict[str, torch.Tensor]:
    """The flat state dict of a ``.safetensors`` file, on the CPU; nothing is unpickled."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return load_safetensors(path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"could not read the safetensors checkpoint {path}: {exc}. It may be truncated (an "
            "interrupted download or copy) or not a safetensors file."
        ) from exc


def load_maft_plus_weights(model: nn.Module, checkpoint: Mapping[str, Any]) -> list[str]:
    """Load an official or own state dict into ``model``; return the keys the file left unset."""
    state = convert_official_state_dict(checkpoint)
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    kept = check_compatible(model_shapes, {k: tuple(v.shape) for k, v in state.items()})
    model.load_state_dict(state, strict=False)
    text_embedder = getattr(model, "text_embedder", None)
    if text_embedder is not None:  # cached text embeddings came from the old text tower
        text_embedder.clear_cache()
    if kept:
        logger.info(
            "%d text-tower keys not in the checkpoint keep their pretrained values", len(kept)
        )
    return kept


class MAFTPlusCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer that reads official MAFT+ files strictly and tensors-only, and
    writes atomically: a crash while saving never leaves a corrupt checkpoint or a
    ``last_checkpoint`` tag that points to one."""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = Path(self.save_dir) / basename
        self.logger.info("Saving checkpoint to %s", path)
        write_atomically(path, lambda tmp: torch.save(data, tmp))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = Path(self.save_dir) / "last_checkpoint"
        write_atomically(path, lambda tmp: Path(tmp).write_text(last_filename_basename))

    def __init__(
        self, model: nn.Module, save_dir: str = "", *, allow_pickle: bool = False, **kwargs
    ):
        """
        Args:
            allow_pickle: also read files that need unpickling (detectron2 ``.pkl`` files, or
                ``.pth`` files holding more than tensors). Unpickling runs code from the file:
                only for trusted files.
        """
        super().__init__(model, save_dir, **kwargs)
        self.allow_pickle = allow_pickle

    def _load_file(self, filename: str) -> dict[str, Any]:
        if filename.endswith(SAFETENSORS_SUFFIX):  # tensors only by construction
            return {"model": load_safetensors_file(filename)}
        if not filename.endswith((".pth", ".pt")):
            if not self.allow_pickle:
                raise ValueError(
                    f"{filename} is not a .safetensors, .pth or .pt file; other formats (e.g. "
                    "detectron2 .pkl) are unpickled, which runs code from the file: pass "
                    "allow_pickle=True (only for trusted files) or convert it to a .pth state dict"
                )
            return super()._load_file(filename)
        checkpoint = load_state_dict_file(filename, allow_pickle=self.allow_pickle)
        if "model" not in checkpoint:  # a flat (released) state dict
            checkpoint = {"model": checkpoint}
        return checkpoint

    def _load_model(self, checkpoint: dict[str, Any]) -> _IncompatibleKeys:
        kept = load_maft_plus_weights(self.model, {"model": checkpoint.pop("model")})
        return _IncompatibleKeys(missing_keys=kept, unexpected_keys=[], incorrect_shapes=[])


def evaluation_model(cfg) -> nn.Module:
    """``MAFTPlus(cfg)`` on ``MODEL.DEVICE`` in eval mode, with ``MODEL.WEIGHTS`` loaded through
    :class:`MAFTPlusCheckpointer`; an empty ``MODEL.WEIGHTS`` keeps the model as built (its
    pretrained CLIP only), with a warning. The evaluation tools build their model with this."""
    model = MAFTPlus(cfg).to(torch.device(cfg.MODEL.DEVICE)).eval()
    if cfg.MODEL.WEIGHTS:
        MAFTPlusCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: evaluating the model as built (pretrained CLIP)")
    return model
