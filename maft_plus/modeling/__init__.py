"""MAFT+ modeling: backbone, proposal generator, text classifier, CDT, meta-architecture."""

from . import backbone  # noqa: F401  (registration)
from .meta_arch import MAFTPlus

__all__ = ["MAFTPlus"]
