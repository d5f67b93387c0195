"""Evidence from a Model Openness Framework record (the Model Openness Tool's YAML).

`record_evidence` resolves each component's licence the way the tool does: the component's own
`license`, else the record's licence for the component's content type, else the distribution
licence; none of these, or `license: unlicensed`, is "unlicensed". Export is in
`allmende.openness.mof`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from allmende.openness.evidence import COMPONENTS, Component, Source
from allmende.openness.sources.base import UNLICENSED, ModelEvidence, license_from_id

FRAMEWORK = {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}

# Each component's content type (the MOT's mof.settings.yml).
CONTENT_TYPE = {
    "Model architecture": "code",
    "Model parameters (Final)": "data",
    "Evaluation results": "document",
    "Model card": "document",
    "Data card": "document",
    "Technical report": "document",
    "Sample model outputs": "document",
    "Training code": "code",
    "Inference code": "code",
    "Evaluation code": "code",
    "Evaluation data": "data",
    "Supporting libraries and tools": "code",
    "Datasets": "data",
    "Data preprocessing code": "code",
    "Model parameters (Intermediate)": "data",
    "Research paper": "document",
    "Model metadata": "data",
}


def _str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _global(release: dict[str, Any], kind: str) -> str | None:
    lic = release.get("license")
    if not isinstance(lic, dict):
        return None
    entry = lic.get(kind)
    return _str(entry.get("name")) if isinstance(entry, dict) else None


def resolve_license(component: dict[str, Any], release: dict[str, Any]) -> str:
    """The MOT's licence resolution for one listed component ("unlicensed" if none)."""
    if "license" in component:
        return _str(component.get("license")) or UNLICENSED
    kind = CONTENT_TYPE.get(str(component.get("name")), "")
    return _global(release, kind) or _global(release, "distribution") or UNLICENSED


def load_record(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("release"), dict):
        raise ValueError(f"{path} is not a Model Openness Framework record (no release)")
    return data


def is_record(path: str | Path) -> bool:
    p = Path(path)
    if p.suffix.lower() not in (".yml", ".yaml") or not p.is_file():
        return False
    try:
        data = load_record(p)
    except (ValueError, yaml.YAMLError, OSError):
        return False
    framework = data.get("framework")
    return isinstance(framework, dict) and framework.get("name") == FRAMEWORK["name"]


def record_evidence(record: dict[str, Any], ref: str) -> ModelEvidence:
    """A MOT record as evidence; every fact's source is the record (`ref`) and its field."""
    release: dict[str, Any] = record["release"]
    name = _str(release.get("name")) or Path(ref).stem
    ev = ModelEvidence(model=name, name=name, sources=[Source("mof", ref)])
    ev.producer = _str(release.get("producer"))
    dist = _global(release, "distribution")
    if dist:
        path = release["license"]["distribution"].get("path")
        ev.license = license_from_id(
            dist,
            url=_str(path),
            source=Source("mof", ref, "release.license.distribution"),
        )
        if ev.license is not None and ev.license.spdx is None and ev.license.name is None:
            ev.license.name = dist
    components = release.get("components")
    for comp in components if isinstance(components, list) else []:
        if not isinstance(comp, dict) or comp.get("name") not in COMPONENTS:
            continue
        cname = str(comp["name"])
        ev.components[cname] = Component(
            cname,
            resolve_license(comp, release),
            _str(comp.get("component_path")) or _str(comp.get("license_path")),
            Source("mof", ref, f"release.components[{cname}]"),
        )
    ev.architecture = _str(release.get("architecture"))
    for key in ("repository", "huggingface", "type", "origin"):
        if (value := _str(release.get(key))) is not None:
            ev.metadata[f"mof.{key}"] = value
    return ev


class MOFSource:
    kind = "mof"

    def collect(self, target: str) -> ModelEvidence | None:
        if not is_record(target):
            return None
        return record_evidence(load_record(target), str(target))
