"""`allmende openness` and `allmende catalog` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from allmende.cli.openness import catalog, openness
from allmende.openness.mof import validate_record
from allmende.openness.report import REPORT_KEYS
from allmende.openness.sources import write_metadata

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("allmende")
    group.add_command(openness)
    group.add_command(catalog)
    return group


def test_openness_model_json(cli: click.Group) -> None:
    result = CliRunner().invoke(cli, ["openness", "smollm2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert REPORT_KEYS <= set(report)
    assert report["model"] == "smollm2" and report["license"]["spdx"] == "Apache-2.0"
    # Flags may come first, and `report` is the explicit spelling.
    assert json.loads(CliRunner().invoke(cli, ["openness", "--json", "smollm2"]).output) == report
    explicit = CliRunner().invoke(cli, ["openness", "report", "smollm2", "--json"])
    assert json.loads(explicit.output) == report


def test_openness_human_summary(cli: click.Group) -> None:
    result = CliRunner().invoke(cli, ["openness", "llama-3.1"])
    assert result.exit_code == 0
    assert "OSAID:    open-weights" in result.output
    assert "user-threshold (700,000,000)" in result.output
    assert "not legal advice" in result.output


def test_openness_mof_output(cli: click.Group) -> None:
    import yaml

    result = CliRunner().invoke(cli, ["openness", "olmo", "--mof"])
    assert result.exit_code == 0
    assert validate_record(yaml.safe_load(result.output)) == []


def test_license_command(cli: click.Group, tmp_path: Path) -> None:
    mit = FIXTURES / "licenses" / "mit.txt"
    result = CliRunner().invoke(cli, ["openness", "license", str(mit), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {"spdx": "MIT", "name": "MIT License", "clauses": []}
    acme = FIXTURES / "hf" / "acme-llama-finetune" / "LICENSE"
    data = json.loads(CliRunner().invoke(cli, ["openness", "license", str(acme), "--json"]).output)
    assert data["spdx"] is None
    assert {"user-threshold", "attribution", "use-policy"} <= {c["kind"] for c in data["clauses"]}
    text = CliRunner().invoke(cli, ["openness", "license", str(acme)])
    assert "user-threshold [50,000,000]" in text.output


def test_bulk_json_lines(cli: click.Group, tmp_path: Path) -> None:
    gguf = write_metadata(tmp_path / "a.gguf", {"general.name": "A", "general.license": "mit"})
    result = CliRunner().invoke(
        cli, ["openness", "bulk", str(gguf), str(FIXTURES / "mot" / "OLMo-7B.yml"), "--json"]
    )
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["license"]["spdx"] == "MIT"
    assert second["mof"]["class"] == "I"


def test_bad_gguf_is_a_clean_error(cli: click.Group, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    result = CliRunner().invoke(cli, ["openness", str(bad)])
    assert result.exit_code == 1 and "not a GGUF file" in result.output


def test_catalog_validate(cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["catalog", "validate"])
    assert result.exit_code == 0 and "Catalog valid" in result.output
    (tmp_path / "broken.yaml").write_text("id: other\nname: X\n")
    result = CliRunner().invoke(cli, ["catalog", "validate", str(tmp_path)])
    assert result.exit_code == 1 and "broken.yaml" in result.output
