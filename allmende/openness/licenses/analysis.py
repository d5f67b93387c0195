"""A licence text analysed: which licence it is, and the clauses that restrict its use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from allmende.openness.evidence import Clause, Source
from allmende.openness.licenses.clauses import detect_clauses
from allmende.openness.licenses.identify import identify_text


@dataclass
class LicenseAnalysis:
    spdx: str | None  # SPDX id, or None for a licence SPDX does not list
    name: str | None  # human name, or None when the text was not recognised
    clauses: list[Clause] = field(default_factory=list)
    confidence: float = 0.0  # of the identification (spdx/name), 0.0 when not recognised


def analyse(text: str, source: Source) -> LicenseAnalysis:
    """Identify a licence text and detect its clauses (evidence offsets index `text`)."""
    spdx, name, confidence = identify_text(text)
    return LicenseAnalysis(spdx, name, detect_clauses(text, source), confidence)


def clause_to_json(clause: Clause) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": clause.kind,
        "evidence": {
            "start": clause.evidence.start,
            "end": clause.evidence.end,
            "quote": clause.evidence.quote,
        },
        "source": clause.source.cite(),
    }
    if clause.threshold is not None:
        out["threshold"] = clause.threshold
    return out


def analysis_to_json(a: LicenseAnalysis) -> dict[str, Any]:
    """The `allmende openness license --json` shape: spdx, name, clauses."""
    return {"spdx": a.spdx, "name": a.name, "clauses": [clause_to_json(c) for c in a.clauses]}
