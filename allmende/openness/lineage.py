"""Fine-tune lineage: base-model chains, and the licence restrictions a model inherits.

Parents come from the evidence (GGUF ``general.base_model.N.*``, the model card's ``base_model``,
the Hub, a catalog entry's ``base_model``); each is resolved to a catalog entry by id or by
`Catalog.match` (Hub ids, URLs, GGUF names), and the catalog continues the chain. The walk is
cycle-safe and lists the nearest ancestor first.

Inheritance: a model derived from another stays bound by the base's licence unless the evidence
shows the base's licence lets it be relicensed. The open licences that permit relicensing carry
no restrictive clause, so the rule reduces to: every clause of every ancestor is inherited (marked
with that ancestor); when the model carries the same licence as an ancestor, only the kinds its
own clauses do not already state are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from allmende.openness.catalog import Catalog, CatalogEntry
from allmende.openness.evidence import Clause, License
from allmende.openness.sources.base import ModelEvidence, same_license
from allmende.openness.sources.catalog import entry_evidence

MAX_DEPTH = 16


@dataclass
class Ancestor:
    id: str  # catalog id, or the name the evidence gives when the catalog does not know it
    known: bool  # whether the catalog has an entry (and so evidence) for it
    license: str | None = None
    license_obj: License | None = None
    clauses: list[Clause] = field(default_factory=list)
    via: str = ""  # the name or id that led here


@dataclass
class Lineage:
    ancestors: list[Ancestor] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.ancestors]

    def inherited(self, own: list[Clause], own_license: License | None) -> list[tuple[str, Clause]]:
        """(ancestor id, clause) for the ancestors' clauses that bind the model too.

        All of an ancestor's clauses are inherited, except, when the model carries the very same
        licence, the kinds its own clauses already state.
        """
        out: list[tuple[str, Clause]] = []
        seen: set[tuple[str, int | None, str]] = set()
        for a in self.ancestors:
            same = same_license(own_license, a.license_obj)
            own_kinds = {c.kind for c in own} if same else set()
            for c in a.clauses:
                key = (c.kind, c.threshold, c.source.ref)
                if c.kind in own_kinds or key in seen:
                    continue
                seen.add(key)
                out.append((a.id, c))
        return out


def _find(catalog: Catalog, names: list[str]) -> CatalogEntry | None:
    for name in names:
        entry = catalog.get(name) or catalog.match(name)
        if entry is not None:
            return entry
    return None


def _parents(ev: ModelEvidence) -> list[list[str]]:
    """Each parent's names (first is shown); GGUF files give several names per parent."""
    names = ev.metadata.get("base_model_names")
    groups: list[list[str]] = [list(g) for g in names] if isinstance(names, list) else []
    shown = {g[0] for g in groups if g}
    groups += [[b] for b in ev.base_models if b not in shown]
    return [g for g in groups if g]


def resolve_lineage(ev: ModelEvidence, catalog: Catalog) -> Lineage:
    """Base models, nearest first, each with its licence and clauses where known."""
    lineage = Lineage()
    seen: set[str] = {ev.catalog_id} if ev.catalog_id else set()
    seen.add(ev.model)
    for names in _parents(ev):
        entry = _find(catalog, names)
        if entry is None or entry.id == ev.catalog_id:
            label = names[0]
            if entry is None and label not in seen:
                seen.add(label)
                lineage.ancestors.append(Ancestor(label, False, via=label))
            continue
        _walk(entry, names[0], catalog, seen, lineage)
    return lineage


def _walk(
    entry: CatalogEntry | None, via: str, catalog: Catalog, seen: set[str], lineage: Lineage
) -> None:
    while entry is not None and entry.id not in seen and len(lineage.ancestors) < MAX_DEPTH:
        seen.add(entry.id)
        base = entry_evidence(entry)
        lic = base.license.spdx or base.license.name if base.license else None
        lineage.ancestors.append(
            Ancestor(entry.id, True, lic, base.license, list(base.clauses), via)
        )
        if not entry.base_model:
            return
        via = entry.base_model
        entry = catalog.get(entry.base_model) or catalog.match(entry.base_model)
    if entry is None and via not in seen and not catalog.get(via):
        seen.add(via)
        lineage.ancestors.append(Ancestor(via, False, via=via))
