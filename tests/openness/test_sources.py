"""Evidence sources: GGUF metadata, model directories, Hub metadata, MOF records, the catalog."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub.hf_api import ModelInfo

from allmende.models.resolve import PACKAGED
from allmende.openness.evidence import Component, Evidence, License, Source
from allmende.openness.sources import (
    CatalogSource,
    GGUFSource,
    HFDirSource,
    HubSource,
    MOFSource,
    merge,
    read_metadata,
    write_metadata,
)
from allmende.openness.sources.base import UNLICENSED, parse_size
from allmende.openness.sources.gguf import GGUFError
from allmende.openness.sources.hf_dir import front_matter

FIXTURES = Path(__file__).parent / "fixtures"
SMOLLM2 = PACKAGED["smollm2-135m-instruct"].locate()
# The packaged model is part of the install (make install): without it these tests fail.
needs_smollm2 = pytest.mark.model


class FakeHub:
    """Answers `model_info` with a recorded response; records the calls."""

    def __init__(self, name: str) -> None:
        data = json.loads((FIXTURES / "hub" / name).read_text())
        data.pop("_comment", None)
        self.data = data
        self.calls: list[tuple[str, Any]] = []

    def model_info(self, repo_id: str, *, expand: Any = None) -> ModelInfo:
        self.calls.append((repo_id, expand))
        return ModelInfo(**self.data)  # type: ignore[no-untyped-call]


# --- GGUF -----------------------------------------------------------------------------------


@needs_smollm2
def test_gguf_packaged_smollm2() -> None:
    ev = GGUFSource().collect(str(SMOLLM2))
    assert ev is not None
    assert ev.license is not None and ev.license.spdx == "Apache-2.0"
    assert ev.license.source == Source("gguf", str(SMOLLM2), "general.license")
    assert ev.name and "smollm2" in ev.name.lower()
    assert ev.metadata["general.basename"] == "smollm2"
    assert ev.parameters == 135_000_000
    assert "Model parameters (Final)" in ev.components
    assert CatalogSource().find(ev.metadata["general.basename"]).id == "smollm2"  # type: ignore[union-attr]


def test_gguf_writer_round_trip(tmp_path: Path) -> None:
    meta = {
        "general.name": "X",
        "general.base_model.count": 2,
        "general.base_model.0.name": "A",
        "general.base_model.1.repo_url": "https://huggingface.co/o/b",
        "general.datasets": ["d1", "d2"],
        "general.flag": True,
        "general.ratio": 0.5,
        "tokenizer.ggml.tokens": ["a", "b", "c"],
    }
    path = write_metadata(tmp_path / "m.gguf", meta)
    read = read_metadata(path)
    assert read["general.datasets"] == ["d1", "d2"]
    assert read["general.flag"] is True and read["general.ratio"] == 0.5
    assert "tokenizer.ggml.tokens" not in read  # skipped, not parsed
    ev = GGUFSource().collect(str(path))
    assert ev is not None
    assert ev.base_models == ["A", "https://huggingface.co/o/b"]
    assert ev.datasets == ["d1", "d2"]
    assert ev.license is None


def test_gguf_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 20)
    with pytest.raises(GGUFError):
        read_metadata(bad)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 5) + b"\x10")
    with pytest.raises(GGUFError):
        read_metadata(truncated)
    assert GGUFSource().collect(str(tmp_path / "missing.gguf")) is None
    assert GGUFSource().collect(str(FIXTURES / "mot" / "BLOOM.yml")) is None


def test_parse_size() -> None:
    assert parse_size("8B") == 8_000_000_000
    assert parse_size("8x7B") == 56_000_000_000
    assert parse_size("1.5T") == 1_500_000_000_000
    assert parse_size("large") is None


# --- Hugging Face model directory -----------------------------------------------------------


def test_front_matter() -> None:
    assert front_matter("---\nlicense: mit\n---\n# x") == {"license": "mit"}
    assert front_matter("# no front matter") == {}
    assert front_matter("---\n: [\n---\n") == {}


def test_hf_dir_licence_text_and_front_matter() -> None:
    folder = FIXTURES / "hf" / "acme-llama-finetune"
    ev = HFDirSource().collect(str(folder))
    assert ev is not None
    assert ev.base_models == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert ev.datasets == ["acme/helpdesk-dialogues"]
    assert ev.architecture == "LlamaForCausalLM"
    assert ev.license is not None and ev.license.name == "acme-community"
    kinds = {c.kind for c in ev.clauses}
    assert {"user-threshold", "attribution", "use-policy"} <= kinds
    threshold = next(c for c in ev.clauses if c.kind == "user-threshold")
    assert threshold.threshold == 50_000_000
    assert threshold.source.kind == "license-text"
    assert threshold.source.ref.endswith("LICENSE")
    text = (folder / "LICENSE").read_text()
    assert text[threshold.evidence.start : threshold.evidence.end] == threshold.evidence.quote


def test_hf_dir_recognised_licence_file(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "licenses" / "mit.txt", tmp_path / "LICENSE.txt")
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    (tmp_path / "model.safetensors").write_bytes(b"")
    ev = HFDirSource().collect(str(tmp_path))
    assert ev is not None and ev.license is not None
    assert ev.license.spdx == "MIT"  # the licence text beats the front matter
    assert any("declares Apache-2.0" in n for n in ev.notes)
    assert ev.components["Model parameters (Final)"].license == "MIT"
    assert ev.clauses == []


def test_hf_dir_not_a_model(tmp_path: Path) -> None:
    assert HFDirSource().collect(str(tmp_path)) is None


# --- Hub ------------------------------------------------------------------------------------


def test_hub_recorded_model_info() -> None:
    api = FakeHub("model_info_acme.json")
    ev = HubSource(api).collect("acme/helpdesk-8b")
    assert ev is not None
    assert api.calls and api.calls[0][0] == "acme/helpdesk-8b"
    assert ev.license is not None and ev.license.name == "Llama 3.1 Community License Agreement"
    assert ev.base_models == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert ev.gated is True and ev.parameters == 8_030_261_248
    assert ev.architecture == "LlamaForCausalLM"
    assert "Model parameters (Final)" in ev.components
    assert next(c for c in ev.clauses if c.kind == "user-threshold").threshold == 700_000_000


def test_hub_failure_is_a_note() -> None:
    class Offline:
        def model_info(self, repo_id: str, *, expand: Any = None) -> ModelInfo:
            raise OSError("offline")

    ev = HubSource(Offline()).collect("acme/x")
    assert ev is not None and ev.license is None
    assert "unavailable" in ev.notes[0]
    assert HubSource(Offline()).collect("not a hub id") is None


# --- MOF records and the catalog ------------------------------------------------------------


def test_mof_import_resolves_licences_like_the_tool() -> None:
    ev = MOFSource().collect(str(FIXTURES / "mot" / "Pythia-70M.yml"))
    assert ev is not None and ev.producer == "EleutherAI"
    assert ev.license is not None and ev.license.spdx == "Apache-2.0"
    comps = ev.components
    assert comps["Training code"].license == "MIT"  # the component's own licence
    assert comps["Datasets"].license == "Apache-2.0"  # falls back to the distribution licence
    assert comps["Research paper"].license == "CC-BY-SA-4.0"
    assert comps["Datasets"].source == Source(
        "mof", str(FIXTURES / "mot" / "Pythia-70M.yml"), "release.components[Datasets]"
    )
    assert len(comps) == 15


def test_mof_import_unlicensed(tmp_path: Path) -> None:
    record = tmp_path / "r.yml"
    record.write_text(
        "framework: {name: 'Model Openness Framework', version: '1.0', date: '2024-12-15'}\n"
        "release:\n  name: R\n  producer: P\n  license: {}\n  components:\n"
        "    - {name: 'Model card', license: ''}\n    - {name: 'Data card'}\n"
    )
    ev = MOFSource().collect(str(record))
    assert ev is not None
    assert ev.components["Model card"].license == UNLICENSED
    assert ev.components["Data card"].license == UNLICENSED
    assert MOFSource().collect(str(FIXTURES / "hub" / "model_info_acme.json")) is None


def test_catalog_source_clauses_cite_the_licence() -> None:
    ev = CatalogSource().collect("meta-llama/Llama-3.1-8B-Instruct")
    assert ev is not None and ev.catalog_id == "llama-3.1"
    threshold = next(c for c in ev.clauses if c.kind == "user-threshold")
    assert threshold.threshold == 700_000_000
    assert threshold.source.kind == "catalog"
    assert threshold.source.ref.startswith("https://github.com/meta-llama/")
    assert ev.index and ev.index_source is not None and ev.index_source.kind == "index"
    assert CatalogSource().collect("no-such-model-anywhere") is None


def test_merge_precedence_keeps_every_source() -> None:
    local = Evidence(
        "m",
        license=License("MIT", "MIT License", source=Source("gguf", "f.gguf", "general.license")),
        sources=[Source("gguf", "f.gguf")],
        components={"Model card": Component("Model card", None, "x", Source("gguf", "f.gguf"))},
    )
    catalog = Evidence(
        "m",
        name="M",
        license=License("Apache-2.0", "Apache", source=Source("catalog", "m", "license")),
        sources=[Source("catalog", "m")],
        components={
            "Model card": Component("Model card", "CC-BY-4.0", "y", Source("catalog", "m"))
        },
    )
    merged = merge([catalog, local])
    assert merged.license is not None and merged.license.spdx == "MIT"
    assert merged.name == "M"
    assert merged.components["Model card"].license == "CC-BY-4.0"  # only the catalog knows it
    assert {s.kind for s in merged.sources} == {"gguf", "catalog"}
    assert any("Apache-2.0" in n for n in merged.notes)
