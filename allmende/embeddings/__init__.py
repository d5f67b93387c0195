"""Lean numpy sentence-embedding runtime (no torch)."""

from allmende.embeddings.bert import BertEmbedder, packaged_minilm_dir

__all__ = ["BertEmbedder", "packaged_minilm_dir"]
