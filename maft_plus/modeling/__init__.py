"""MAFT+ modeling: backbone, proposal generator, text classifier, CDT, losses, meta-architecture."""

from . import backbone  # noqa: F401  (registration)
