"""Verdicts: MOF class (MOT rules), OSAID, the Index profile, the AI Act exemption, lineage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from allmende.openness.catalog import load_catalog
from allmende.openness.evidence import Clause, Component, License, Source, Span
from allmende.openness.lineage import resolve_lineage
from allmende.openness.sources import MOFSource
from allmende.openness.sources.base import ModelEvidence
from allmende.openness.sources.catalog import entry_evidence
from allmende.openness.verdicts import (
    INDEX_PARAMETERS,
    REQUIRED,
    ai_act,
    index_profile,
    mof_class,
    osaid,
)

MOT = Path(__file__).parent / "fixtures" / "mot"
SRC = Source("catalog", "test")


def _evidence(
    components: Mapping[str, str | None], license: str | None = "Apache-2.0", **extra: object
) -> ModelEvidence:
    ev = ModelEvidence(
        "test",
        license=License(license, license, source=SRC) if license else None,
        sources=[SRC],
        components={n: Component(n, lic, None, SRC) for n, lic in components.items()},
    )
    for key, value in extra.items():
        setattr(ev, key, value)
    return ev


ALL = [c for cls in ("III", "II", "I") for c in REQUIRED[cls]]


@pytest.mark.parametrize(
    ("record", "expected", "next_missing"),
    [
        ("Pythia-70M.yml", "I", None),
        ("OLMo-7B.yml", "I", None),
        ("Polyglot-Ko.yml", "II", ["Model parameters (Intermediate)"]),
        ("GPT-NeoX-20B.yml", "III", ["Evaluation data"]),
        ("BLOOM.yml", None, None),
    ],
)
def test_mof_class_matches_the_research_recomputation(
    record: str, expected: str | None, next_missing: list[str] | None
) -> None:
    ev = MOFSource().collect(str(MOT / record))
    assert ev is not None
    for strict in (True, False):
        verdict = mof_class(ev, strict=strict)
        assert verdict.class_ == expected
    if next_missing is not None and expected is not None:
        nxt = {"III": "II", "II": "I"}[expected]
        assert verdict.missing[nxt] == next_missing
    if record == "BLOOM.yml":
        assert verdict.status["Model parameters (Final)"] == "invalid"
        assert verdict.progress["III"] == pytest.approx(16.7)
    if record == "Polyglot-Ko.yml":
        assert verdict.progress["I"] == pytest.approx(92.9)


def test_mof_research_paper_replaces_technical_report() -> None:
    comps: dict[str, str | None] = {c: "Apache-2.0" for c in ALL if c != "Technical report"}
    assert mof_class(_evidence(comps)).class_ == "I"
    comps.pop("Research paper")
    v = mof_class(_evidence(comps))
    assert v.class_ is None
    assert "Technical report" in v.missing["III"]


def test_mof_strict_spelling_and_fallback() -> None:
    comps: dict[str, str | None] = {c: "Apache 2.0" for c in REQUIRED["III"]}
    assert mof_class(_evidence(comps)).class_ == "III"
    assert mof_class(_evidence(comps), strict=True).class_ is None  # the MOT matches exact ids
    # Components without a licence take the model's licence (the distribution licence).
    fallback = _evidence({c: None for c in REQUIRED["III"]})
    assert mof_class(fallback).class_ == "III"
    assert mof_class(_evidence({c: None for c in REQUIRED["III"]}, None)).class_ is None


def test_mof_fine_tune_weights_bound_by_base() -> None:
    comps: dict[str, str | None] = {c: "Apache-2.0" for c in REQUIRED["III"]}
    clause = Clause("use-policy", Span(0, 0, ""), SRC)
    v = mof_class(_evidence(comps), inherited=[clause])
    assert v.class_ is None and v.status["Model parameters (Final)"] == "invalid"


OLMO_LIKE = {c: "Apache-2.0" for c in ALL}


def test_osaid_open_source_for_olmo_like_evidence() -> None:
    verdict, reasons = osaid(_evidence(OLMO_LIKE), [])
    assert verdict == "open-source"
    assert any(r.startswith("Parameters:") for r in reasons)


def test_osaid_open_weights_for_llama() -> None:
    ev = entry_evidence(load_catalog().get("llama-3.1"))  # type: ignore[arg-type]
    verdict, reasons = osaid(ev, ev.clauses)
    assert verdict == "open-weights"
    assert any("not an OSI-approved" in r for r in reasons)


def test_osaid_restrictive_clause_blocks_an_open_spdx() -> None:
    clause = Clause("non-commercial", Span(0, 0, ""), SRC)
    assert osaid(_evidence(OLMO_LIKE), [clause])[0] == "open-weights"


def test_osaid_not_open_without_weights_and_unknown_without_evidence() -> None:
    comps = {k: v for k, v in OLMO_LIKE.items() if k != "Model parameters (Final)"}
    assert osaid(_evidence(comps), [])[0] == "not-open"
    assert osaid(ModelEvidence("nothing"), [])[0] == "unknown"


def test_index_profile_from_catalog_ratings() -> None:
    ev = entry_evidence(load_catalog().get("llama-3.1"))  # type: ignore[arg-type]
    profile = index_profile(ev, ev.clauses)
    assert profile.basis == "index"
    assert profile.score == 29  # the research notes' table
    assert list(profile.parameters) == list(INDEX_PARAMETERS)
    assert profile.source is not None and "osai-index" in profile.source


def test_index_profile_derived() -> None:
    ev = _evidence(OLMO_LIKE, datasets=["d"])
    profile = index_profile(ev, [])
    assert profile.basis == "derived"
    assert profile.parameters["weights_endmodel"] == "open"
    assert profile.parameters["licenses"] == "open"
    assert profile.parameters["paper"] == "closed"
    assert 0 <= profile.score <= 100
    closed = index_profile(ModelEvidence("x", sources=[SRC]), [])
    assert closed.score == 0


def test_ai_act_likely_for_a_fully_open_small_model() -> None:
    ev = _evidence(OLMO_LIKE, parameters=7_000_000_000)
    verdict, reasons, disclaimer = ai_act(ev, [])
    assert verdict == "likely"
    assert "not legal advice" in disclaimer
    assert any("monetised" in r for r in reasons)


def test_ai_act_unlikely_for_llama() -> None:
    ev = entry_evidence(load_catalog().get("llama-3.1"))  # type: ignore[arg-type]
    verdict, reasons, _ = ai_act(ev, ev.clauses)
    assert verdict == "unlikely"
    assert any("use-policy" in r and "user-threshold" in r for r in reasons)


def test_ai_act_unknown_for_thin_or_huge() -> None:
    assert ai_act(ModelEvidence("x"), [])[0] == "unknown"
    thin = _evidence({}, "MIT")
    assert ai_act(thin, [])[0] == "unknown"
    huge = _evidence(OLMO_LIKE, parameters=400_000_000_000)
    verdict, reasons, _ = ai_act(huge, [])
    assert verdict == "unknown" and any("10^25" in r for r in reasons)


def test_lineage_chain_nearest_first_and_cycle_safe() -> None:
    catalog = load_catalog()
    ev = ModelEvidence("ft", base_models=["allenai/Llama-3.1-Tulu-3-8B"], sources=[SRC])
    lineage = resolve_lineage(ev, catalog)
    tulu = catalog.match("allenai/Llama-3.1-Tulu-3-8B")
    assert tulu is not None
    assert lineage.ids[0] == tulu.id
    assert lineage.ids == [tulu.id, *catalog.lineage(tulu.id)]
    # A cycle in the evidence (the model names itself as its base) stops the walk.
    selfish = ModelEvidence("llama-3.1", catalog_id="llama-3.1", base_models=["llama-3.1"])
    assert resolve_lineage(selfish, catalog).ids == []
    unknown = ModelEvidence("x", base_models=["someone/unknown-base"])
    lin = resolve_lineage(unknown, catalog)
    assert lin.ids == ["someone/unknown-base"] and not lin.ancestors[0].known
