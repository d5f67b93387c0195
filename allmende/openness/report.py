"""The openness report: evidence from every source that applies, verdicts, lineage, as JSON.

`build_report(target)` takes a catalog id, a Hugging Face id (read from the Hub only when
`allow_network`; otherwise matched against the catalog), a GGUF file, a model directory or a MOF
YAML record. The keys are stable; docs/openness.md gives the full schema. `report_summary` is
the small `openness` object that `/v1/models` shows for each model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from allmende.openness.catalog import Catalog, CatalogEntry, load_catalog
from allmende.openness.evidence import Clause, Evidence
from allmende.openness.licenses import clause_to_json
from allmende.openness.lineage import resolve_lineage
from allmende.openness.sources.base import ModelEvidence, NotedClause, merge
from allmende.openness.sources.catalog import entry_evidence
from allmende.openness.sources.gguf import GGUFSource
from allmende.openness.sources.hf_dir import HFDirSource
from allmende.openness.sources.hf_hub import HubSource, ModelInfoAPI
from allmende.openness.sources.mof import MOFSource
from allmende.openness.verdicts import (
    INDEX_ATTRIBUTION,
    ai_act,
    index_profile,
    mof_class,
    osaid,
)

SCHEMA_VERSION = 1
DISCLAIMER = (
    "This report is information assembled from the evidence listed in it, not legal advice. "
    "Verdicts follow published frameworks (MOF, OSAID 1.0, the European Open Source AI Index, "
    "the EU AI Act) as operationalised in Allmende's documentation; check the cited sources."
)


# The report's stable top-level keys (docs/openness.md); tests hold every report to them.
REPORT_KEYS = frozenset(
    {"model", "license", "clauses", "mof", "osaid", "index", "ai_act", "lineage", "evidence"}
)


def _is_hub_id(target: str) -> bool:
    from allmende.models.hub import is_hub_id

    return is_hub_id(target)


def collect(
    target: str,
    *,
    allow_network: bool = False,
    catalog: Catalog | None = None,
    hub_api: ModelInfoAPI | None = None,
) -> ModelEvidence:
    """Merged evidence about `target` from every source that applies (see module docs)."""
    catalog = catalog or load_catalog()
    found: list[Evidence] = []
    path = Path(target).expanduser()
    names: list[str] = []
    if path.exists():
        if path.is_dir():
            ggufs = sorted(path.glob("*.gguf"))
            found += [e for e in (HFDirSource().collect(str(path)),) if e is not None]
            if len(ggufs) == 1:
                found += [e for e in (GGUFSource().collect(str(ggufs[0])),) if e is not None]
        else:
            for source in (GGUFSource(), MOFSource()):
                ev = source.collect(str(path))
                if ev is not None:
                    found.append(ev)
                    break
        for found_ev in found:
            names += [n for n in (found_ev.name, found_ev.model) if n]
            if isinstance(found_ev, ModelEvidence):
                names += [
                    str(found_ev.metadata[k])
                    for k in (
                        "general.basename",
                        "general.source.repo_url",
                        "general.source.huggingface.repository",
                        "general.repo_url",
                        "mof.huggingface",
                    )
                    if k in found_ev.metadata
                ]
    else:
        names.append(target)
        if allow_network and _is_hub_id(target):
            hub = HubSource(hub_api).collect(target)
            if hub is not None:
                found.append(hub)
    entry = _match(catalog, target if not path.exists() else None, names)
    if entry is not None:
        found.append(entry_evidence(entry))
    merged = merge(found, model=target)
    if not found:
        merged.notes.append(f"No evidence found for '{target}'.")
    return merged


def _match(catalog: Catalog, target: str | None, names: list[str]) -> CatalogEntry | None:
    if target is not None and (entry := catalog.get(target)) is not None:
        return entry
    for name in names:
        if (entry := catalog.match(name)) is not None:
            return entry
    return None


def clause_json(clause: Clause, inherited_from: str | None = None) -> dict[str, Any]:
    out = clause_to_json(clause)
    if isinstance(clause, NotedClause) and clause.note:
        out["note"] = clause.note
    if inherited_from is not None:
        out["inherited_from"] = inherited_from
    return out


def _facts(ev: ModelEvidence) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = []
    if ev.license is not None:
        facts.append(
            {
                "fact": "license",
                "value": ev.license.spdx or ev.license.name,
                "source": ev.license.source.cite() if ev.license.source else None,
            }
        )
    for name, comp in sorted(ev.components.items()):
        facts.append(
            {
                "fact": f"component: {name}",
                "value": comp.license,
                "source": comp.source.cite() if comp.source else None,
            }
        )
    facts += [{"fact": "base_model", "value": b, "source": None} for b in ev.base_models]
    facts += [{"fact": "dataset", "value": d, "source": None} for d in ev.datasets]
    if ev.parameters is not None:
        facts.append({"fact": "parameters", "value": ev.parameters, "source": None})
    if ev.architecture:
        facts.append({"fact": "architecture", "value": ev.architecture, "source": None})
    return facts


def report_from_evidence(ev: ModelEvidence, catalog: Catalog | None = None) -> dict[str, Any]:
    """The report for already-collected evidence."""
    catalog = catalog or load_catalog()
    lineage = resolve_lineage(ev, catalog)
    inherited = lineage.inherited(ev.clauses, ev.license)
    all_clauses = [*ev.clauses, *(c for _, c in inherited)]
    mof = mof_class(ev, inherited=[c for _, c in inherited])
    verdict, osaid_reasons = osaid(ev, all_clauses)
    index = index_profile(ev, all_clauses)
    exemption, ai_reasons, ai_disclaimer = ai_act(ev, all_clauses)
    if inherited:
        names = ", ".join(sorted({a for a, _ in inherited}))
        osaid_reasons.append(f"Restrictions inherited from the base model(s): {names}.")
    lic = ev.license
    return {
        "schema_version": SCHEMA_VERSION,
        "model": ev.model,
        "name": ev.name,
        "producer": ev.producer,
        "catalog": ev.catalog_id,
        "license": {
            "spdx": lic.spdx if lic else None,
            "name": lic.name if lic else None,
            "url": lic.url if lic else None,
            "source": lic.source.cite() if lic and lic.source else None,
        },
        "clauses": [
            *(clause_json(c) for c in ev.clauses),
            *(clause_json(c, a) for a, c in inherited),
        ],
        "components": {
            name: {
                "license": comp.license,
                "resolved_license": mof.licenses.get(name),
                "url": comp.url,
                "status": mof.status.get(name, "missing"),
                "source": comp.source.cite() if comp.source else None,
            }
            for name, comp in sorted(ev.components.items())
        },
        "mof": {
            "class": mof.class_,
            "missing": mof.missing,
            "progress": mof.progress,
            "reasons": mof.reasons,
        },
        "osaid": {"verdict": verdict, "reasons": osaid_reasons},
        "index": {
            "score": index.score,
            "parameters": index.parameters,
            "basis": index.basis,
            "reasons": index.reasons,
            "source": index.source,
            "attribution": INDEX_ATTRIBUTION if index.basis == "index" else None,
        },
        "ai_act": {"exemption": exemption, "reasons": ai_reasons, "disclaimer": ai_disclaimer},
        "lineage": lineage.ids,
        "lineage_detail": [
            {"id": a.id, "known": a.known, "license": a.license, "via": a.via}
            for a in lineage.ancestors
        ],
        "evidence": _facts(ev),
        "sources": [{"kind": s.kind, "ref": s.ref, "detail": s.detail} for s in ev.sources],
        "notes": ev.notes,
        "disclaimer": DISCLAIMER,
    }


def build_report(
    target: str, *, allow_network: bool = False, hub_api: ModelInfoAPI | None = None
) -> dict[str, Any]:
    """The openness report for `target` (catalog id, HF id, GGUF path, model dir, MOF file)."""
    catalog = load_catalog()
    return report_from_evidence(
        collect(target, allow_network=allow_network, catalog=catalog, hub_api=hub_api), catalog
    )


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The `openness` object of `/v1/models`: MOF class, OSAID verdict, licence, clause kinds."""
    return {
        "mof_class": report["mof"]["class"],
        "osaid": report["osaid"]["verdict"],
        "license": {"spdx": report["license"]["spdx"], "name": report["license"]["name"]},
        "clauses": sorted({c["kind"] for c in report["clauses"]}),
        "catalog": report.get("catalog"),
    }
