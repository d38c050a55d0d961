"""Vocabularies: the classes to segment, from every source, in one place.

- ``core.py``: :class:`Vocabulary`, classes as synonym lists with thing flags;
- ``class_lists.py``: the ``id:name,synonym,...`` files and the lists shipped in the package;
- ``presets.py``: what a user types (a preset, a file, free text) -> a vocabulary;
- ``datasets.py``: the vocabulary of a registered dataset.
"""

from .core import Vocabulary

__all__ = ["Vocabulary"]
