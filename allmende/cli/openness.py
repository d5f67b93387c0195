"""`allmende openness`: openness reports; `allmende catalog`: the shipped catalog.

    allmende openness MODEL [--json | --mof] [--online]
    allmende openness license FILE [--json]
    allmende openness bulk PATH... --json
    allmende catalog validate [PATH]

MODEL is a catalog id, a Hugging Face id, a GGUF file, a model directory or a MOF YAML record.
`allmende openness MODEL` is `allmende openness report MODEL`: a first argument that is not a
subcommand name is taken as MODEL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..openness.catalog import load_catalog, validate_catalog
from ..openness.evidence import Source
from ..openness.licenses import analyse, analysis_to_json
from ..openness.mof import dump_record, export_record
from ..openness.report import build_report


class _ModelOrCommand(click.Group):
    """A group whose first argument is a subcommand, or else a MODEL for `report`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if first is not None and first not in self.commands:
            args = ["report", *args]
        return super().parse_args(ctx, args)


def _target(model: str) -> str:
    """A packaged model name ("smollm2-135m-instruct") means its installed GGUF file."""
    if Path(model).expanduser().exists() or load_catalog().get(model) is not None:
        return model
    from ..models.resolve import ALIASES, PACKAGED

    packaged = PACKAGED.get(ALIASES.get(model.lower(), model.lower()))
    found = packaged.locate() if packaged is not None else None
    return str(found) if found is not None else model


def _report(model: str, online: bool) -> dict[str, Any]:
    try:
        return build_report(_target(model), allow_network=online)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{model}: {exc}") from None


@click.group(cls=_ModelOrCommand, context_settings={"help_option_names": ["-h", "--help"]})
def openness() -> None:
    """How open is a model: `allmende openness MODEL [--json]` (see `report --help`)."""


@openness.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--mof", "as_mof", is_flag=True, help="Print the report as a MOF YAML record.")
@click.option("--online/--offline", default=False, help="Read Hugging Face Hub metadata.")
def report(model: str, as_json: bool, as_mof: bool, online: bool) -> None:
    """The openness report for MODEL: catalog id, HF id, GGUF file, model dir or MOF record."""
    data = _report(model, online)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif as_mof:
        click.echo(dump_record(export_record(data)), nl=False)
    else:
        click.echo(render(data))


@openness.command("license")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print spdx, name and clauses as JSON.")
def license_cmd(file: Path, as_json: bool) -> None:
    """Identify a licence text and list the clauses that restrict its use."""
    text = file.read_text(encoding="utf-8", errors="replace")
    result = analysis_to_json(analyse(text, Source("license-text", str(file))))
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"Licence: {result['name'] or 'not recognised'} ({result['spdx'] or 'no SPDX id'})")
    if not result["clauses"]:
        click.echo("No restriction clauses found.")
    for c in result["clauses"]:
        extra = f" [{c['threshold']:,}]" if "threshold" in c else ""
        click.echo(f"- {c['kind']}{extra}: {_short(c['evidence']['quote'])}")


@openness.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON report per line (JSON lines).")
@click.option("--online/--offline", default=False, help="Read Hugging Face Hub metadata.")
def bulk(paths: tuple[str, ...], as_json: bool, online: bool) -> None:
    """Reports for many models; with --json one report per line, else one summary line each."""
    for model in paths:
        try:
            data = build_report(_target(model), allow_network=online)
        except (OSError, ValueError) as exc:
            data = {"model": model, "error": str(exc)}
        if as_json:
            click.echo(json.dumps(data, ensure_ascii=False))
        elif "error" in data:
            click.echo(f"{model}\terror: {data['error']}")
        else:
            lic = data["license"]["spdx"] or data["license"]["name"]
            mof = data["mof"]["class"] or "none"
            verdict, score = data["osaid"]["verdict"], data["index"]["score"]
            click.echo(f"{model}\tMOF {mof}\t{verdict}\tIndex {score}\t{lic}")


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(data: dict[str, Any]) -> str:
    """A human-readable summary of a report, with reasons."""
    lic = data["license"]
    lines = [
        f"Model:    {data['model']}"
        + (f" (catalog: {data['catalog']})" if data["catalog"] else ""),
        f"Licence:  {lic['name'] or 'unknown'}" + (f" [{lic['spdx']}]" if lic["spdx"] else ""),
    ]
    if data["lineage"]:
        lines.append(f"Lineage:  {' <- '.join(data['lineage'])} (nearest first)")
    if data["clauses"]:
        lines.append("Clauses:")
        for c in data["clauses"]:
            extra = f" ({c['threshold']:,})" if "threshold" in c else ""
            origin = f", inherited from {c['inherited_from']}" if "inherited_from" in c else ""
            what = c.get("note") or _short(c["evidence"]["quote"]) or ""
            lines.append(f"  - {c['kind']}{extra}{origin}: {what} [{c['source']}]")
    mof = data["mof"]
    lines.append(f"MOF:      class {mof['class'] or 'none'}")
    lines += [f"  - {r}" for r in mof["reasons"]]
    lines.append(f"OSAID:    {data['osaid']['verdict']}")
    lines += [f"  - {r}" for r in data["osaid"]["reasons"]]
    index = data["index"]
    lines.append(f"Index:    {index['score']}/100 ({index['basis']})")
    lines.append("  " + ", ".join(f"{k}={v}" for k, v in index["parameters"].items()))
    if index.get("attribution"):
        lines.append(f"  Ratings: {index['attribution']}")
    lines.append(f"AI Act:   open-source exemption {data['ai_act']['exemption']}")
    lines += [f"  - {r}" for r in data["ai_act"]["reasons"]]
    lines.append(f"  ({data['ai_act']['disclaimer']})")
    lines += [f"Note:     {n}" for n in data["notes"]]
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def catalog() -> None:
    """The shipped openness catalog."""


@catalog.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
def validate(path: Path | None) -> None:
    """Check catalog files (the shipped catalog, or PATH); exit 1 on any problem."""
    problems = validate_catalog(path)
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    count = len(load_catalog(path))
    click.echo(f"Catalog valid: {count} entries.")
