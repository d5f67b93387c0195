"""Reports: stable keys, lineage, speed, MOF export, the HTTP router and the serving policy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from allmende.api.openness import engine_report, openness_summary
from allmende.openness.mof import export_record, validate_record
from allmende.openness.policy import OpennessPolicy, check
from allmende.openness.report import REPORT_KEYS, build_report, report_summary
from allmende.openness.sources import MOFSource, write_metadata
from allmende.openness.verdicts import mof_class
from tests.conftest import fake_engine, serve_app
from tests.openness.test_sources import SMOLLM2, FakeHub, needs_smollm2

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = REPORT_KEYS | {"sources", "disclaimer"}


@pytest.fixture
def finetune_gguf(tmp_path: Path) -> Path:
    """A metadata-only GGUF of a Llama 3.1 fine-tune."""
    return write_metadata(
        tmp_path / "tiny-finetune.gguf",
        {
            "general.architecture": "llama",
            "general.name": "Tiny Test Finetune",
            "general.license": "llama3.1",
            "general.base_model.count": 1,
            "general.base_model.0.name": "Llama 3.1 8B Instruct",
            "general.base_model.0.organization": "Meta Llama",
        },
    )


def test_report_keys_for_a_catalog_id() -> None:
    report = build_report("olmo")
    assert KEYS <= set(report)
    assert report["mof"]["class"] == "I"
    assert report["osaid"]["verdict"] == "open-source"
    assert report["license"] == {
        "spdx": "Apache-2.0",
        "name": report["license"]["name"],
        "url": report["license"]["url"],
        "source": "olmo#license",
    }
    llama = build_report("llama-3.1")["index"]
    assert llama["basis"] == "index" and "CC-BY 4.0" in llama["attribution"]
    json.dumps(report)  # plain JSON


@needs_smollm2
def test_packaged_smollm2_report_is_fast_and_cites_the_file() -> None:
    build_report(str(SMOLLM2))  # warm the caches (catalog, SPDX data)
    began = time.perf_counter()
    report = build_report(str(SMOLLM2))
    assert time.perf_counter() - began < 0.05
    assert report["catalog"] == "smollm2"
    assert report["license"]["spdx"] == "Apache-2.0"
    assert report["license"]["source"] == f"{SMOLLM2}#general.license"
    assert report["clauses"] == [] and report["lineage"] == []
    assert report["osaid"]["verdict"] == "open-source"
    assert report["ai_act"]["exemption"] == "likely"
    assert {s["kind"] for s in report["sources"]} >= {"gguf", "catalog"}


def test_finetune_inherits_llama_clauses(finetune_gguf: Path) -> None:
    report = build_report(str(finetune_gguf))
    assert report["lineage"] == ["llama-3.1"]
    assert report["catalog"] is None
    by_kind = {c["kind"]: c for c in report["clauses"]}
    assert by_kind["user-threshold"]["threshold"] == 700_000_000
    assert {"attribution", "use-policy", "pass-through"} <= set(by_kind)
    assert by_kind["pass-through"]["inherited_from"] == "llama-3.1"
    assert report["osaid"]["verdict"] == "open-weights"
    assert report["ai_act"]["exemption"] == "unlikely"


def test_relicensed_finetune_still_bound(tmp_path: Path) -> None:
    path = write_metadata(
        tmp_path / "relicensed.gguf",
        {
            "general.name": "Relicensed Tiny",
            "general.license": "apache-2.0",
            "general.base_model.count": 1,
            "general.base_model.0.repo_url": "https://huggingface.co/meta-llama/Llama-3.1-8B",
        },
    )
    report = build_report(str(path))
    assert report["license"]["spdx"] == "Apache-2.0"
    inherited = [c for c in report["clauses"] if c.get("inherited_from") == "llama-3.1"]
    assert {c["kind"] for c in inherited} >= {"user-threshold", "use-policy"}
    assert report["osaid"]["verdict"] == "open-weights"
    assert report["components"]["Model parameters (Final)"]["status"] == "invalid"


def test_hf_dir_and_hub_reports() -> None:
    report = build_report(str(FIXTURES / "hf" / "acme-llama-finetune"))
    assert report["lineage"] == ["llama-3.1"]
    own = [c for c in report["clauses"] if "inherited_from" not in c]
    assert own[0]["evidence"]["quote"] and own[0]["source"].endswith("LICENSE")
    hub = build_report(
        "acme/helpdesk-8b", allow_network=True, hub_api=FakeHub("model_info_acme.json")
    )
    assert hub["lineage"] == ["llama-3.1"]
    assert hub["index"]["parameters"]["weights_endmodel"] == "partial"  # gated
    offline = build_report("acme/helpdesk-8b")
    assert offline["osaid"]["verdict"] == "unknown" and offline["mof"]["class"] is None


def test_hub_id_matched_to_catalog_offline() -> None:
    report = build_report("meta-llama/Llama-3.1-8B-Instruct")
    assert report["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert report["catalog"] == "llama-3.1"
    assert report_summary(report) == {
        "mof_class": None,
        "osaid": "open-weights",
        "license": {"spdx": None, "name": "Llama 3.1 Community License Agreement"},
        "clauses": ["attribution", "pass-through", "use-policy", "user-threshold"],
        "catalog": "llama-3.1",
    }


@pytest.mark.parametrize("record", ["Pythia-70M.yml", "GPT-NeoX-20B.yml", "BLOOM.yml"])
def test_mof_export_validates_and_round_trips(record: str, tmp_path: Path) -> None:
    import yaml

    report = build_report(str(FIXTURES / "mot" / record))
    exported = export_record(report)
    assert validate_record(exported) == []
    out = tmp_path / "exported.yml"
    out.write_text(yaml.safe_dump(exported))
    again = MOFSource().collect(str(out))
    original = MOFSource().collect(str(FIXTURES / "mot" / record))
    assert again is not None and original is not None
    assert mof_class(again).class_ == mof_class(original).class_ == report["mof"]["class"]


def test_any_report_exports_valid(finetune_gguf: Path) -> None:
    for target in ("llama-3.1", "no-such-model", str(finetune_gguf)):
        assert validate_record(export_record(build_report(target))) == []
    assert validate_record({"framework": {}}) != []


# --- policy ---------------------------------------------------------------------------------


def test_policy_rules(finetune_gguf: Path) -> None:
    report = build_report(str(finetune_gguf))
    policy = OpennessPolicy(
        min_mof_class="III",
        osaid=["open-source"],
        forbid_clauses=["pass-through"],
        require_license_known=True,
    )
    violations = check(policy, report)
    assert [v.split(":")[0] for v in violations] == ["min_mof_class", "osaid", "forbid_clauses"]
    assert "inherited from llama-3.1" in violations[2]
    assert check(policy.model_copy(update={"allow_models": ["tiny"]}), report, "tiny") == []
    assert check(OpennessPolicy(), report) == []
    unknown = build_report("no-such-model")
    assert check(OpennessPolicy(require_license_known=True), unknown)[0].startswith(
        "require_license_known"
    )
    assert check(OpennessPolicy(min_mof_class="I"), build_report("olmo")) == []


# --- HTTP -----------------------------------------------------------------------------------


async def test_openness_route(finetune_gguf: Path) -> None:
    engine = fake_engine("meta-llama/Llama-3.1-8B-Instruct")
    local = fake_engine("local-ft")
    local.source = str(finetune_gguf)
    async for _, client in serve_app([engine, local]):
        r = await client.get("/v1/openness/meta-llama/Llama-3.1-8B-Instruct")
        assert r.status_code == 200
        assert r.json()["catalog"] == "llama-3.1"
        r = await client.get("/v1/openness/local-ft")
        assert r.json()["lineage"] == ["llama-3.1"]
        r = await client.get("/v1/openness/nope")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found"
        listed = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
        assert "user-threshold" in listed["local-ft"]["openness"]["clauses"]


def test_openness_summary_unknown_and_cached() -> None:
    engine = fake_engine("fake-unknown-model")
    summary = openness_summary(engine)
    assert summary is not None
    assert summary["osaid"] == "unknown" and summary["license"] == {"spdx": None, "name": None}
    assert engine_report(engine) is engine_report(engine)
