"""Lean numpy sentence-embedding runtime (no torch)."""

from allmende.embeddings.bert import BertEmbedder

__all__ = ["BertEmbedder"]
