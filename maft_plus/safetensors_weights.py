"""Writing MAFT+ weights as ``.safetensors``: our key names, contiguous tensors, a format tag.

A ``.safetensors`` file holds only tensors and a small string-to-string metadata header, so reading
one never runs code (``maft_plus.checkpoint.load_safetensors_file``). What is written is the state
dict ``MAFTPlusCheckpointer`` would load: released names are converted to ours first (``module.``
stripped, official CDT names renamed, the teacher ``backbone_t.`` and loss buffers dropped).
"""

import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .checkpoint import convert_official_state_dict
from .files import write_atomically

logger = logging.getLogger(__name__)

__all__ = ["MAFT_PLUS_FORMAT", "save_safetensors_weights", "shared_memory_groups"]

# Version of the layout of our .safetensors files (key names, metadata); bump on any change.
MAFT_PLUS_FORMAT = "1"


def save_safetensors_weights(
    checkpoint: Mapping[str, Any], path: str | Path, *, source: str = ""
) -> dict[str, torch.Tensor]:
    """Write a MAFT+ state dict to ``path`` as safetensors, atomically.

    Args:
        checkpoint: a state dict or ``{"model": state dict, ...}`` in our or the released naming
            (see ``convert_official_state_dict``); other entries of a training checkpoint
            (optimizer, iteration) are not written.
        path: the ``.safetensors`` file to write; its folder is created if needed.
        source: where the weights came from (only its file name is stored, in the metadata).

    Returns:
        The state dict written: our key names, contiguous tensors.

    Raises:
        ValueError: entries that are not tensors, or tensors sharing memory (tied weights), which
            safetensors cannot store as separate tensors.
    """
    state = {
        key: value.contiguous() for key, value in convert_official_state_dict(checkpoint).items()
    }
    shared = shared_memory_groups(state)
    if shared:
        listed = "; ".join(", ".join(group) for group in shared[:5])
        raise ValueError(
            f"{len(shared)} group(s) of tensors share memory ({listed}); safetensors stores "
            "tensors independently and refuses shared ones. Save a copy of each (e.g. "
            "{k: v.clone() for k, v in state.items()}) if the model does not rely on the sharing."
        )
    metadata = {
        "format": "pt",
        "maft_plus_format": MAFT_PLUS_FORMAT,
        "source": Path(source).name if source else "",
    }
    write_atomically(Path(path), lambda tmp: save_file(state, tmp, metadata=metadata))
    logger.info("wrote %d tensors to %s", len(state), path)
    return state


def shared_memory_groups(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Keys whose tensors overlap in memory, in groups of two or more (tied or aliased weights).

    Tensors that are disjoint slices of one storage do not overlap and are not reported; empty
    tensors never are.
    """
    spans_by_storage: dict[tuple, list[tuple[int, int, str]]] = defaultdict(list)
    for key, tensor in state.items():
        if tensor.numel() == 0 or tensor.device.type == "meta":
            continue
        start = tensor.data_ptr()
        steps = zip(tensor.shape, tensor.stride(), strict=True)
        last = sum((size - 1) * stride for size, stride in steps)  # elements after the first
        end = start + (last + 1) * tensor.element_size()  # one byte past the last element
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        spans_by_storage[storage].append((start, end, key))
    groups = []
    for spans in spans_by_storage.values():
        spans.sort()
        group, group_end = [spans[0][2]], spans[0][1]
        for start, end, key in spans[1:]:
            if start < group_end:  # overlaps the group so far
                group.append(key)
                group_end = max(group_end, end)
            else:
                groups.append(group)
                group, group_end = [key], end
        groups.append(group)
    return [sorted(group) for group in groups if len(group) > 1]
