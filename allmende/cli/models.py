"""`allmende models`: what a server serves, or what `serve` would serve here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from ..config import ModelSpec
from ..errors import ConfigError
from ..models.resolve import PACKAGED, resolve
from .options import load_settings, model_specs, settings_options


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


@click.command()
@click.option("--url", default=None, help="Ask a running server (e.g. http://127.0.0.1:8000).")
@settings_options
def models(url: str | None, config_file: Path | None, **flags: Any) -> None:
    """List models: those a running server serves (--url), or those `serve` would serve."""
    if url:
        try:
            response = httpx.get(url.rstrip("/").removesuffix("/v1") + "/v1/models", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise click.ClickException(f"Cannot list models at {url}: {exc}") from None
        rows: list[tuple[str, ...]] = [
            (m["id"], str(m.get("engine", "")), str(m.get("context_length") or ""), m["owned_by"])
            for m in response.json()["data"]
        ]
        click.echo(_table(rows, ("ID", "ENGINE", "CONTEXT", "OWNED BY")))
        return
    settings = load_settings(config_file, flags)
    rows = []
    for spec in model_specs(settings):
        rows.append(_local_row(spec))
    configured = {r[0] for r in rows}
    for name, packaged in PACKAGED.items():
        if name not in configured:
            where = packaged.locate()
            rows.append(
                (
                    name,
                    packaged.engine,
                    "installed" if where else "not installed",
                    str(where or packaged.install),
                )
            )
    click.echo(_table(rows, ("ID", "ENGINE", "STATUS", "SOURCE")))


def _local_row(spec: ModelSpec) -> tuple[str, ...]:
    try:
        resolved = resolve(spec, allow_download=False)
    except ConfigError as exc:
        return (spec.id or spec.source, spec.engine or "?", "unavailable", exc.message)
    return (resolved.id, resolved.engine, "ready", resolved.location or "(scripted)")
