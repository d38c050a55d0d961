"""Inference post-processing: pure functions from one image's predictions to its outputs.

- ``probabilities.py``: the class probabilities of the queries;
- ``semantic.py``: the semantic score rule; ``labelling.py``: its argmax in bounded memory;
- ``panoptic.py`` and ``instance.py``: the Mask2Former panoptic rule and instance outputs;
- ``results.py``: the tasks a call asks for and the dispatch of one image;
- ``sizes.py``: the padded, image and output sizes of one image.

Outputs follow detectron2: (K, H, W) semantic scores (or their per-pixel argmax and max),
``(panoptic_seg, segments_info)`` and ``Instances``.
"""

from .instance import instance_inference
from .labelling import semantic_labels
from .panoptic import panoptic_inference
from .probabilities import classification_probs
from .results import SEMANTIC_OUTPUTS, InferenceOptions, Tasks, image_results
from .semantic import semantic_inference
from .sizes import ImageSizes

__all__ = [
    "SEMANTIC_OUTPUTS",
    "ImageSizes",
    "InferenceOptions",
    "Tasks",
    "classification_probs",
    "image_results",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
    "semantic_labels",
]
