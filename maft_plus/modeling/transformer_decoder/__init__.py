"""Masked-attention transformer decoder with the in-vocabulary (text-embedding) class head."""

from .class_logits import TextClasses, synonym_logits_to_class_logits
from .decoder import MAFTPlusTransformerDecoder, build_attention_mask, project_masks
from .layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer

__all__ = [
    "MLP",
    "CrossAttentionLayer",
    "FFNLayer",
    "MAFTPlusTransformerDecoder",
    "SelfAttentionLayer",
    "TextClasses",
    "build_attention_mask",
    "project_masks",
    "synonym_logits_to_class_logits",
]
