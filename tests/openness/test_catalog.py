"""The shipped openness catalog: schema validity, coverage, matching, lineage and the validator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from allmende.openness.catalog import (
    MODELS_DIR,
    Catalog,
    CatalogEntry,
    CatalogError,
    load_catalog,
    validate_catalog,
)
from allmende.openness.evidence import CLAUSE_KINDS, COMPONENTS

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "data"

REQUIRED_IDS = [
    "llama-2", "llama-3", "llama-3.1", "llama-3.2", "llama-3.3", "llama-4",
    "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "codestral",
    "gemma", "gemma-2", "gemma-3",
    "qwen1.5", "qwen2", "qwen2.5", "qwen3",
    "deepseek-v3", "deepseek-r1",
    "phi-2", "phi-3", "phi-4",
    "falcon", "falcon-180b", "olmo", "olmo-2", "pythia", "bloom", "starcoder2",
    "granite-code", "granite-3", "granite-4.0", "smollm2", "gpt-neox-20b", "gpt-oss", "dbrx",
    "nemotron-4-340b", "command-r", "yi-1.5", "all-minilm-l6-v2",
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_shipped_catalog_is_valid() -> None:
    assert validate_catalog() == []


def test_coverage(catalog: Catalog) -> None:
    assert len(catalog.entries) >= 40
    missing = [id_ for id_ in REQUIRED_IDS if catalog.get(id_) is None]
    assert missing == []


def test_default_catalog_is_cached() -> None:
    assert load_catalog() is load_catalog()


def test_every_entry_is_sourced(catalog: Catalog) -> None:
    for entry in catalog.entries:
        kinds = {s.kind for s in entry.sources}
        assert "license" in kinds, entry.id
        covered = {fact for s in entry.sources for fact in s.facts}
        assert {"license", "components"} <= covered or not entry.components, entry.id
        if entry.index is not None:
            assert any(s.kind == "index" and "index" in s.facts for s in entry.sources)
        assert set(entry.components) <= set(COMPONENTS)
        assert set(entry.license.clauses) <= set(CLAUSE_KINDS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1"),
        ("meta-llama/Meta-Llama-3.1-70B", "llama-3.1"),
        ("Meta Llama 3.1 8B Instruct", "llama-3.1"),  # a GGUF general.name
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama-2"),
        ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"),
        ("Smollm2 135M 8k Lc100K Mix1 Ep2", "smollm2"),  # the packaged GGUF's general.name
        ("smollm2", "smollm2"),  # its general.basename
        ("bartowski/SmolLM2-360M-Instruct-GGUF", "smollm2"),
        ("sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
        ("allenai/OLMo-2-1124-7B", "olmo-2"),
        ("allenai/OLMo-7B", "olmo"),
        ("EleutherAI/pythia-160m", "pythia"),
        ("https://huggingface.co/EleutherAI/gpt-neox-20b", "gpt-neox-20b"),
        ("google/gemma-2-9b-it", "gemma-2"),
        ("google/gemma-7b", "gemma"),
        ("google/codegemma-7b-it", "codegemma"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5"),
        ("deepseek-ai/DeepSeek-R1", "deepseek-r1"),
        ("openai/gpt-oss-20b", "gpt-oss"),
        ("bigcode/starcoder2-15b", "starcoder2"),
        ("ibm-granite/granite-4.0-h-small", "granite-4.0"),
        ("CohereForAI/c4ai-command-r-v01", "command-r"),
    ],
)
def test_match(catalog: Catalog, name: str, expected: str) -> None:
    entry = catalog.match(name)
    assert entry is not None, name
    assert entry.id == expected


def test_most_specific_match_wins(catalog: Catalog) -> None:
    # "*qwen2.5-*" and "*qwen2.5-72b*" both match; the longer pattern (other licence) wins.
    big = catalog.match("Qwen/Qwen2.5-72B-Instruct")
    assert big is not None and big.id == "qwen2.5-72b"
    assert big.license.name != catalog.get("qwen2.5").license.name  # type: ignore[union-attr]
    # a Llama-3.1 fine-tune with its own entry beats the generic "*llama-3.1-*"
    tuned = catalog.match("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF")
    assert tuned is not None and tuned.id == "llama-3.1-nemotron-70b"


def test_no_match(catalog: Catalog) -> None:
    assert catalog.match("someone/entirely-unknown-model") is None
    assert catalog.match("") is None


def test_lineage(catalog: Catalog) -> None:
    assert catalog.lineage("tulu-3") == ["llama-3.1"]
    assert catalog.lineage("llama-3.1-nemotron-70b") == ["llama-3.1"]
    assert catalog.lineage("codellama") == ["llama-2"]
    assert catalog.lineage("llama-3.1") == []
    assert catalog.lineage("no-such-id") == []


def test_licence_facts(catalog: Catalog) -> None:
    llama = catalog.get("llama-3.1")
    assert llama is not None
    assert llama.license.spdx is None
    assert "user-threshold" in llama.license.clauses
    assert llama.license.threshold == 700_000_000
    assert llama.index is not None and llama.index.parameters["licenses"] == "closed"
    smol = catalog.get("smollm2")
    assert smol is not None and smol.license.spdx == "Apache-2.0"
    assert smol.license.clauses == ()
    assert {"Datasets", "Training code", "Model parameters (Final)"} <= set(smol.components)
    gemma = catalog.get("gemma-3")
    assert gemma is not None and "revocable" in gemma.license.clauses


# ---- facts against the reference data ----


def _mot_component_names(record: str) -> set[str]:
    data = yaml.safe_load((REFERENCE / record).read_text(encoding="utf-8"))
    comps = data["release"].get("components") or []
    return {c["name"] for c in comps if not str(c.get("license", "")).startswith("Component not")}


def _entries_with(catalog: Catalog, kind: str) -> list[tuple[CatalogEntry, str]]:
    return [(e, s.ref) for e in catalog.entries for s in e.sources if s.kind == kind]


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference data not present")
def test_components_match_mot_records(catalog: Catalog) -> None:
    checked = 0
    for entry, ref in _entries_with(catalog, "mot"):
        record = _mot_component_names(ref)
        names = set(entry.components)
        assert record <= names, entry.id
        others = [s for s in entry.sources if s.kind != "mot" and "components" in s.facts]
        if not others:  # built from the MOT record alone: the same components
            assert names == record, entry.id
        checked += 1
    assert checked >= 25
    pythia = catalog.get("pythia")
    assert pythia is not None
    assert pythia.components["Training code"].license == "MIT"
    assert pythia.components["Research paper"].license == "CC-BY-SA-4.0"


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference data not present")
def test_index_ratings_match_index_records(catalog: Catalog) -> None:
    entries = _entries_with(catalog, "index")
    assert len(entries) >= 20
    for entry, ref in entries:
        data = yaml.safe_load((REFERENCE / ref).read_text(encoding="utf-8"))
        assert entry.index is not None
        assert entry.index.system == str(data["system"]["name"]).strip()
        for param, rating in entry.index.parameters.items():
            assert str(data[param]["class"]).strip().lower() == rating, (entry.id, param)


# ---- the validator on broken catalogs ----


def _entry(id_: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": id_,
        "name": id_.title(),
        "producer": "Someone",
        "type": "language",
        "aliases": [f"someone/{id_}-*"],
        "base_model": None,
        "license": {"spdx": "MIT", "name": "MIT License", "clauses": []},
        "components": {"Model parameters (Final)": {"license": "MIT"}},
        "sources": [{"kind": "model-card", "ref": "https://example.org", "facts": ["name"]}],
    }
    entry.update(changes)
    return entry


def _write(directory: Path, *entries: dict[str, Any], name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        path = directory / f"{name or entry['id']}.yaml"
        path.write_text(yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
    return directory


def test_validator_accepts_minimal_catalog(tmp_path: Path) -> None:
    _write(tmp_path / "models", _entry("a"), _entry("b", base_model="a"))
    assert validate_catalog(tmp_path) == []
    catalog = load_catalog(tmp_path / "models")
    assert [e.id for e in catalog.entries] == ["a", "b"]
    assert catalog.lineage("b") == ["a"]


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([_entry("a", extra_field=1)], "Additional properties"),
        ([_entry("a", type=5)], "type"),
        ([_entry("a", base_model="nowhere")], "unknown base_model 'nowhere'"),
        (
            [_entry("a", components={"Weights": {"license": "MIT"}})],
            "unknown component 'Weights'",
        ),
        (
            [_entry("a", license={"spdx": None, "name": "X", "clauses": ["no-fun"]})],
            "unknown clause kind 'no-fun'",
        ),
        (
            [_entry("a", license={"spdx": None, "name": "X", "clauses": ["user-threshold"]})],
            "no threshold",
        ),
        ([_entry("a", aliases=["x/*"]), _entry("b", aliases=["X/*"])], "duplicate alias"),
        ([_entry("a", base_model="b"), _entry("b", base_model="a")], "base_model cycle"),
        ([_entry("a", base_model="a")], "base_model cycle: a -> a"),
    ],
)
def test_validator_catches(tmp_path: Path, entries: list[dict[str, Any]], needle: str) -> None:
    _write(tmp_path, *entries)
    problems = validate_catalog(tmp_path)
    assert any(needle in p for p in problems), problems
    assert all(": " in p and p.split(": ", 1)[0].endswith(".yaml") for p in problems)


def test_validator_catches_duplicate_ids(tmp_path: Path) -> None:
    _write(tmp_path, _entry("a"))
    _write(tmp_path, _entry("a", aliases=[]), name="a-copy")
    problems = validate_catalog(tmp_path)
    assert any("duplicate id 'a'" in p for p in problems), problems
    assert any("does not match the file name" in p for p in problems)


def test_validator_reports_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    (tmp_path / "list.yaml").write_text("- 1\n", encoding="utf-8")
    problems = validate_catalog(tmp_path)
    assert any(p.startswith("bad.yaml: not valid YAML") for p in problems)
    assert "list.yaml: not a mapping" in problems


def test_unquoted_release_date_is_accepted(tmp_path: Path) -> None:
    text = yaml.safe_dump(_entry("a"), sort_keys=False) + "released: 2024-07-23\n"
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    assert validate_catalog(tmp_path) == []
    entry = load_catalog(tmp_path).get("a")
    assert entry is not None and entry.released == "2024-07-23"


def test_load_rejects_invalid_entry(tmp_path: Path) -> None:
    _write(tmp_path, _entry("a", license={"name": "no spdx key"}))
    with pytest.raises(CatalogError, match=r"a\.yaml"):
        load_catalog(tmp_path)


def test_shipped_files_are_yaml_named_by_id() -> None:
    files = sorted(MODELS_DIR.glob("*.yaml"))
    assert len(files) >= 40
    for file in files:
        assert yaml.safe_load(file.read_text(encoding="utf-8"))["id"] == file.stem
