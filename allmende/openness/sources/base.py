"""The source seam: each source turns a target into `Evidence`; `merge` combines them.

A source is a small adapter with one method, `collect(target) -> Evidence | None` (None: the
target is not something this source reads). Sources return `ModelEvidence`, which adds to the
shared `Evidence` the few facts the verdicts need beyond it (Index ratings, weights gating, size,
architecture). `merge` keeps every fact's `Source` and resolves conflicts by precedence:
local files (GGUF, model directory, a MOF record given as a file) > Hugging Face Hub > catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from allmende.openness.evidence import (
    Clause,
    ClauseKind,
    Component,
    Evidence,
    License,
    Source,
    Span,
)
from allmende.openness.licenses import known_clauses, known_license, license_name, normalize_spdx

# Lower is stronger. "license-text" and "index" facts ride along with the evidence that has them.
PRECEDENCE = {"gguf": 0, "hf-dir": 0, "mof": 0, "license-text": 0, "hf-hub": 1, "catalog": 2}
UNLICENSED = "unlicensed"  # a component a record explicitly marks as having no licence


@dataclass(frozen=True)
class NotedClause(Clause):
    """A clause known from a licence's recorded facts (no text read): `note` says what it is."""

    note: str = ""


@dataclass
class ModelEvidence(Evidence):
    """`Evidence` plus what the verdicts need and `Evidence` has no field for."""

    catalog_id: str | None = None
    index: dict[str, str] = field(default_factory=dict)  # Index parameter -> open/partial/closed
    index_system: str | None = None
    index_source: Source | None = None
    gated: bool | None = None  # weights behind an access form (the Index: "partial")
    parameters: int | None = None  # parameter count, when a source states it
    architecture: str | None = None  # e.g. "llama", "LlamaForCausalLM"
    metadata: dict[str, Any] = field(default_factory=dict)  # raw keys worth showing


class EvidenceSource(Protocol):
    """One kind of evidence: `collect` returns None when `target` is not for this source."""

    kind: str

    def collect(self, target: str) -> Evidence | None: ...


def rank(ev: Evidence) -> int:
    kinds = [s.kind for s in ev.sources]
    return min((PRECEDENCE.get(k, 3) for k in kinds), default=3)


def as_model_evidence(ev: Evidence) -> ModelEvidence:
    if isinstance(ev, ModelEvidence):
        return ev
    return ModelEvidence(**{k: getattr(ev, k) for k in Evidence.__dataclass_fields__})


_SIZE = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)\s*([KMBT])$", re.IGNORECASE)
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_size(label: str | None) -> int | None:
    """A size label ("135M", "8B", "8x7B") as a parameter count; None if it is not one."""
    if not label:
        return None
    m = _SIZE.match(label.strip())
    if m is None:
        return None
    experts = int(m[1]) if m[1] else 1
    return int(experts * float(m[2]) * _SCALE[m[3].upper()])


def license_from_id(
    value: str | None, *, name: str | None = None, url: str | None = None, source: Source
) -> License | None:
    """A `License` from an id ("apache-2.0", "llama3.1", "other") plus optional name and link."""
    raw = (value or "").strip()
    if raw.lower() == "other":
        raw = ""
    if not raw and not name:
        return None
    known = known_license(name or raw) or (known_license(raw) if raw else None)
    spdx = normalize_spdx(raw) if raw else None
    human = (
        (known.name if known else None)
        or name
        or (license_name(raw) if raw else None)
        or raw
        or None
    )
    return License(spdx=spdx, name=human, url=url or (known.url if known else None), source=source)


def clauses_for(lic: License | None) -> list[Clause]:
    """The recorded clauses of a licence known by id or name (no text read)."""
    if lic is None:
        return []
    known = None
    for key in (lic.name, lic.spdx):
        if key and (known := known_license(key)) is not None:
            break
    if known is None:
        return []
    notes = {c.kind: c.note for c in known.clauses}
    return [
        NotedClause(c.kind, c.evidence, c.source, c.threshold, notes.get(c.kind, ""))
        for c in known_clauses(known)
    ]


def dedupe_clauses(clauses: list[Clause]) -> list[Clause]:
    """At most one clause per (kind, source document, threshold), in order."""
    seen: set[tuple[str, str, int | None]] = set()
    out: list[Clause] = []
    for c in clauses:
        key = (c.kind, c.source.ref, c.threshold)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _pick_component(options: list[Component]) -> Component:
    """The strongest source's component, unless only a weaker one knows its licence."""
    for comp in options:
        if comp.license:
            return comp
    return options[0]


def merge(evidences: list[Evidence], model: str | None = None) -> ModelEvidence:
    """One `ModelEvidence` from several, strongest source first; every Source is kept."""
    ordered = sorted((as_model_evidence(e) for e in evidences), key=rank)
    out = ModelEvidence(model=model or (ordered[0].model if ordered else ""))
    if not ordered:
        return out
    for ev in ordered:
        out.name = out.name or ev.name
        out.producer = out.producer or ev.producer
        out.catalog_id = out.catalog_id or ev.catalog_id
        out.gated = out.gated if out.gated is not None else ev.gated
        out.parameters = out.parameters or ev.parameters
        out.architecture = out.architecture or ev.architecture
        if not out.index and ev.index:
            out.index, out.index_system, out.index_source = (
                ev.index,
                ev.index_system,
                ev.index_source,
            )
        for key, value in ev.metadata.items():
            out.metadata.setdefault(key, value)
        for items, target in ((ev.base_models, out.base_models), (ev.datasets, out.datasets)):
            target.extend(x for x in items if x not in target)
        out.sources.extend(s for s in ev.sources if s not in out.sources)
        out.notes.extend(n for n in ev.notes if n not in out.notes)
    licensed = [ev for ev in ordered if ev.license is not None]
    if licensed:
        winner = licensed[0]
        out.license = winner.license
        clauses = list(winner.clauses) or clauses_for(winner.license)
        # Weaker sources describing the same licence may know clauses the winner lacks.
        for ev in licensed[1:]:
            if same_license(ev.license, winner.license):
                kinds = {c.kind for c in clauses}
                clauses.extend(c for c in ev.clauses if c.kind not in kinds)
            elif ev.license is not None:
                other = ev.license.spdx or ev.license.name
                out.notes.append(
                    f"{ev.sources[0].cite() if ev.sources else 'another source'} gives the "
                    f"licence as {other}; the stronger source's licence is used."
                )
        out.clauses = dedupe_clauses(clauses)
    names = {c for ev in ordered for c in ev.components}
    for name in sorted(names):
        options = [ev.components[name] for ev in ordered if name in ev.components]
        out.components[name] = _pick_component(options)
    return out


def same_license(a: License | None, b: License | None) -> bool:
    if a is None or b is None:
        return False
    if a.spdx and b.spdx:
        return a.spdx == b.spdx
    ka = known_license(a.name or "") if a.name else None
    kb = known_license(b.name or "") if b.name else None
    if ka is not None and kb is not None:
        return ka.id == kb.id
    return (a.name or "").lower() == (b.name or "").lower()


def empty_span() -> Span:
    return Span(0, 0, "")


def kinds(clauses: list[Clause]) -> list[ClauseKind]:
    return sorted({c.kind for c in clauses})
