"""Model Openness Framework records (the Model Openness Tool's YAML): import and export.

`record_evidence` reads a MOT record into `Evidence`, resolving each component's licence the
way the tool does (the component's own `license`, else the record's licence for the component's
content type, else the distribution licence; none of these, or `license: unlicensed`, is
"unlicensed"). `export_record` writes any report as a record that validates against the MOT's
`mof_schema.json` (MIT licence, LF AI & Data; a copy ships beside this module).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from allmende.openness.evidence import COMPONENTS
from allmende.openness.sources.base import UNLICENSED
from allmende.openness.sources.mof import (
    CONTENT_TYPE,
    FRAMEWORK,
    MOFSource,
    is_record,
    load_record,
    record_evidence,
    resolve_license,
)

__all__ = [
    "CONTENT_TYPE",
    "MOFSource",
    "dump_record",
    "export_record",
    "is_record",
    "load_record",
    "record_evidence",
    "resolve_license",
    "validate_record",
]

SCHEMA_PATH = Path(__file__).resolve().parent / "mof_schema.json"

# Our own one-line descriptions, used when exporting.
DESCRIPTIONS = {
    "Model architecture": "Source code that defines the model's architecture",
    "Model parameters (Final)": "The trained weights of the released model",
    "Evaluation results": "Results of evaluating the model",
    "Model card": "Documentation of the model: intended use, performance, limitations",
    "Data card": "Documentation of the training data: sources, composition, processing",
    "Technical report": "A report on how the model was built and evaluated",
    "Sample model outputs": "Examples of the model's outputs",
    "Training code": "Source code used to train the model",
    "Inference code": "Source code used to run the model",
    "Evaluation code": "Source code used to evaluate the model",
    "Evaluation data": "Data used to evaluate the model",
    "Supporting libraries and tools": "Libraries and tools used to develop the model",
    "Datasets": "The data the model was trained on",
    "Data preprocessing code": "Source code that cleans and prepares the training data",
    "Model parameters (Intermediate)": "Checkpoints saved during training",
    "Research paper": "A paper describing the model and its development",
    "Model metadata": "Training configuration and optimizer states",
}


_TYPES = {"language", "vision", "image", "audio", "video", "3d", "code", "multimodal", "other"}


def export_record(report: dict[str, Any]) -> dict[str, Any]:
    """A report (from `build_report`) as a MOF record; it validates against `mof_schema.json`."""
    lic = report.get("license") or {}
    dist = lic.get("spdx") or lic.get("name")
    components = []
    for name, comp in (report.get("components") or {}).items():
        if name not in COMPONENTS:
            continue
        item: dict[str, Any] = {"name": name, "description": DESCRIPTIONS[name]}
        if comp.get("license"):
            item["license"] = comp["license"]
        elif not comp.get("resolved_license"):
            item["license"] = UNLICENSED  # else the record's licence applies, as in the report
        if comp.get("url"):
            item["component_path"] = str(comp["url"])
        components.append(item)
    components.sort(key=lambda c: COMPONENTS.index(c["name"]))
    model_type = str(report.get("type") or "language")
    release: dict[str, Any] = {
        "name": str(report.get("name") or report.get("model") or "unknown"),
        "version": "",
        "date": dt.date.today().isoformat(),
        "type": model_type if model_type in _TYPES else "other",
        "architecture": "",
        "origin": ", ".join(report.get("lineage") or []),
        "producer": str(report.get("producer") or ""),
        "contact": "",
        "license": {"distribution": {"name": dist, "path": lic.get("url") or ""}},
        "components": components,
    }
    return {"framework": dict(FRAMEWORK), "release": release}


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_record(record: dict[str, Any]) -> list[str]:
    """Problems with a record against the MOT schema; an empty list means valid."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
        for e in _validator().iter_errors(record)
    ]


def dump_record(record: dict[str, Any]) -> str:
    return yaml.safe_dump(record, sort_keys=False, allow_unicode=True)
