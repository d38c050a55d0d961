"""MAFT+ data: vocabularies and vocabulary files."""
