"""Evidence from the shipped catalog: one entry (by id, or matched by a name) as `Evidence`.

Clause kinds come from the entry's `license.clauses`; each becomes a clause whose `Source` is
``catalog`` with the licence URL as `ref`. The entry records kinds, not quotes: a clause's evidence
span is empty, and its `note` (from the known-licence facts, where there are any) says what the
clause is about in our words.
"""

from __future__ import annotations

from allmende.openness.catalog import Catalog, CatalogEntry, load_catalog
from allmende.openness.evidence import Component, License, Source
from allmende.openness.licenses import known_license
from allmende.openness.sources.base import ModelEvidence, NotedClause, empty_span


def entry_evidence(entry: CatalogEntry) -> ModelEvidence:
    ref = entry.id
    ev = ModelEvidence(
        model=entry.id,
        name=entry.name,
        producer=entry.producer,
        catalog_id=entry.id,
        sources=[Source("catalog", ref)],
    )
    lic = entry.license
    ev.license = License(lic.spdx, lic.name, lic.url, source=Source("catalog", ref, "license"))
    known = known_license(lic.name) or (known_license(lic.spdx) if lic.spdx else None)
    notes = {c.kind: c.note for c in known.clauses} if known else {}
    clause_source = Source("catalog", lic.url or ref, f"{ref}:license.clauses")
    ev.clauses = [
        NotedClause(
            kind,
            empty_span(),
            clause_source,
            lic.threshold if kind == "user-threshold" else None,
            notes.get(kind, ""),
        )
        for kind in lic.clauses
    ]
    for name, comp in entry.components.items():
        ev.components[name] = Component(
            name, comp.license, comp.url, Source("catalog", ref, f"components.{name}")
        )
    if entry.base_model:
        ev.base_models.append(entry.base_model)
    if entry.index is not None:
        ev.index = dict(entry.index.parameters)
        ev.index_system = entry.index.system
        index_ref = next((s.ref for s in entry.sources if s.kind == "index"), ref)
        ev.index_source = Source("index", index_ref, entry.index.system)
        ev.sources.append(ev.index_source)
    ev.sources.extend(
        Source("catalog", s.ref, f"{s.kind}: {', '.join(s.facts)}") for s in entry.sources
    )
    return ev


class CatalogSource:
    """Catalog ids, or any name the catalog matches (HF ids, GGUF names, aliases)."""

    kind = "catalog"

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or load_catalog()

    def find(self, target: str) -> CatalogEntry | None:
        return self.catalog.get(target) or self.catalog.match(target)

    def collect(self, target: str) -> ModelEvidence | None:
        entry = self.find(target)
        return entry_evidence(entry) if entry is not None else None
