"""Openness over HTTP: `GET /v1/openness/{model}` (the full report of a served model), and
`openness_summary(engine)`, the `openness` object `/v1/models` adds to each model.

The report's target is the engine's source (a GGUF file, a model directory); for models behind
an upstream server or without local files, the served id is matched against the catalog. Without
evidence the report says so (verdicts "unknown"). Reports are built once per engine and cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..engines.base import Engine
from ..openness.report import build_report, report_summary

router = APIRouter()
_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def report_target(engine: Engine) -> str:
    """What to build the report from: local files if the engine has them, else its model id."""
    source = engine.source or ""
    if source and not source.startswith(("http://", "https://")) and Path(source).exists():
        return source
    return engine.model_id


def engine_report(engine: Engine) -> dict[str, Any]:
    """The engine's report (cached per model id and source)."""
    key = (engine.model_id, engine.source or "")
    report = _CACHE.get(key)
    if report is None:
        report = build_report(report_target(engine))
        report["served_id"] = engine.model_id
        _CACHE[key] = report
    return report


def openness_summary(engine: Engine) -> dict[str, Any] | None:
    """The `openness` object for `/v1/models`; None if no report could be built."""
    try:
        return report_summary(engine_report(engine))
    except (OSError, ValueError):
        return None


@router.get("/v1/openness/{model_id:path}")
async def get_openness(model_id: str, request: Request) -> dict[str, Any]:
    await request.app.state.gate.admit(request)
    engine: Engine | None = request.app.state.models.find(model_id)
    if engine is None:
        request.app.state.models.get(model_id)  # raises model_not_found
    assert engine is not None
    return await run_in_threadpool(engine_report, engine)
