"""Where the datasets live: ``$DETECTRON2_DATASETS``, as detectron2's own builtin datasets do."""

import os
from pathlib import Path


def datasets_root() -> Path:
    """``$DETECTRON2_DATASETS``, or ``datasets`` (relative to the working directory) if unset."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))
