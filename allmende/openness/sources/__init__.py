"""Evidence sources: GGUF metadata, a model directory, the Hub, MOF records, the catalog.

Each source has one method, `collect(target) -> Evidence | None`; `merge` combines their
evidence with the precedence local files > Hugging Face Hub > catalog, keeping every `Source`.
"""

from __future__ import annotations

from allmende.openness.sources.base import (
    EvidenceSource,
    ModelEvidence,
    NotedClause,
    merge,
)
from allmende.openness.sources.catalog import CatalogSource, entry_evidence
from allmende.openness.sources.gguf import GGUFSource, read_metadata, write_metadata
from allmende.openness.sources.hf_dir import HFDirSource
from allmende.openness.sources.hf_hub import HubSource
from allmende.openness.sources.mof import MOFSource

__all__ = [
    "CatalogSource",
    "EvidenceSource",
    "GGUFSource",
    "HFDirSource",
    "HubSource",
    "MOFSource",
    "ModelEvidence",
    "NotedClause",
    "entry_evidence",
    "merge",
    "read_metadata",
    "write_metadata",
]
