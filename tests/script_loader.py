"""The repository's scripts as modules: ``datasets/``, ``demo/`` and ``tools/`` are not packages.

``pyproject.toml`` puts ``tests/`` on ``sys.path`` so that any test module can
``from script_loader import load_script``.
"""

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def load_script(relative_path: str) -> ModuleType:
    """``REPO/<relative_path>`` (``"datasets/prepare_coco_stuff.py"``) as a module, loaded once.

    It is entered in ``sys.modules`` under the file's stem, so that worker processes find its
    functions by name when they are pickled.
    """
    path = REPO / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"no script {relative_path} in {REPO}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
