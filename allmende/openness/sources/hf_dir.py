"""Evidence from a Hugging Face-style model directory.

- ``README.md`` front matter (YAML between ``---`` lines): ``license``, ``license_name``,
  ``license_link``, ``datasets``, ``base_model`` (a string or a list), ``model_name``.
- Licence files (``LICENSE``, ``LICENSE.txt``, ``LICENSE.md``, ``LICENCE*``, ``COPYING*``,
  ``USE_POLICY.md`` and similar, plus a relative ``license_link``): each is analysed with
  `licenses.analyse`, so every clause quotes the file it comes from.
- ``config.json``: ``architectures`` and ``model_type`` (architecture information).
- Weight files (``*.safetensors``, ``*.bin``, ``*.gguf``, ``*.pt``, ``*.pth``): final parameters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from allmende.openness.evidence import Component, License, Source
from allmende.openness.licenses import analyse
from allmende.openness.sources.base import (
    ModelEvidence,
    clauses_for,
    dedupe_clauses,
    license_from_id,
)

LICENSE_GLOBS = (
    "LICENSE*",
    "LICENCE*",
    "License*",
    "license*",
    "COPYING*",
    "USE_POLICY*",
    "*_USE_POLICY*",
    "ACCEPTABLE_USE*",
)
WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_MAX_TEXT = 1 << 20


def front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card; {} if there is none or it is not a mapping."""
    m = _FRONT.match(text.lstrip("\ufeff"))
    if m is None:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v).strip()]
    return []


def _license_files(folder: Path, link: str | None) -> list[Path]:
    found: dict[Path, None] = {}
    for pattern in LICENSE_GLOBS:
        for f in sorted(folder.glob(pattern)):
            if f.is_file():
                found[f.resolve()] = None
    if link and not re.match(r"^[a-z]+://", link):
        linked = (folder / link).resolve()
        if linked.is_file() and folder.resolve() in linked.parents:
            found = {linked: None, **found}
    return list(found)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read(_MAX_TEXT)


class HFDirSource:
    kind = "hf-dir"

    def collect(self, target: str) -> ModelEvidence | None:
        folder = Path(target)
        if not folder.is_dir():
            return None
        readme = folder / "README.md"
        config = folder / "config.json"
        files = _license_files(folder, None)
        weights = [f for g in WEIGHT_GLOBS for f in sorted(folder.glob(g))]
        if not (readme.is_file() or config.is_file() or files or weights):
            return None
        return dir_evidence(folder)


def dir_evidence(folder: Path) -> ModelEvidence:
    ref = str(folder)
    ev = ModelEvidence(model=folder.name, sources=[Source("hf-dir", ref)])
    readme = folder / "README.md"
    meta = front_matter(_read(readme)) if readme.is_file() else {}
    card = Source("hf-dir", str(readme), "front matter")
    ev.name = _strings(meta.get("model_name"))[0] if _strings(meta.get("model_name")) else None
    ev.name = ev.name or folder.name
    link = _strings(meta.get("license_link"))
    declared = license_from_id(
        _strings(meta.get("license"))[0] if _strings(meta.get("license")) else None,
        name=_strings(meta.get("license_name"))[0] if _strings(meta.get("license_name")) else None,
        url=link[0] if link and re.match(r"^[a-z]+://", link[0]) else None,
        source=Source("hf-dir", str(readme), "license"),
    )
    ev.base_models = _strings(meta.get("base_model"))
    ev.datasets = _strings(meta.get("datasets"))
    if readme.is_file():
        ev.components["Model card"] = Component("Model card", None, str(readme), card)
        ev.sources.append(card)
    ev.license, ev.clauses = _licence(folder, declared, link[0] if link else None, ev.notes)
    if ev.license is not None and ev.license.source is not None:
        ev.sources.append(ev.license.source)
    lic = ev.license.spdx or ev.license.name if ev.license else None
    if "Model card" in ev.components:
        ev.components["Model card"].license = lic
    weights = [f for g in WEIGHT_GLOBS for f in sorted(folder.glob(g))]
    if weights:
        ev.components["Model parameters (Final)"] = Component(
            "Model parameters (Final)", lic, str(weights[0]), Source("hf-dir", str(weights[0]))
        )
    _config(folder / "config.json", ev)
    gated = meta.get("extra_gated_prompt") or meta.get("extra_gated_fields")
    if gated:
        ev.gated = True
        ev.notes.append("The model card asks users to accept terms before downloading (gated).")
    return ev


def _licence(
    folder: Path, declared: License | None, link: str | None, notes: list[str]
) -> tuple[License | None, list[Any]]:
    """The licence (a recognised licence text beats the front matter) and its clauses."""
    main: License | None = None
    clauses: list[Any] = []
    for f in _license_files(folder, link):
        text = _read(f)
        source = Source("license-text", str(f))
        analysis = analyse(text, source)
        clauses.extend(analysis.clauses)
        is_policy = "POLICY" in f.name.upper() or "USE" in f.name.upper().split("_")
        if main is None and not is_policy and (analysis.spdx or analysis.name):
            if analysis.confidence >= 0.75 or declared is None:
                main = License(analysis.spdx, analysis.name, None, text, source)
    if main is not None and declared is not None:
        if (declared.spdx or declared.name) not in (main.spdx, main.name):
            notes.append(
                f"The model card declares {declared.spdx or declared.name}; the licence file "
                f"reads as {main.spdx or main.name}, which is used."
            )
        main.url = declared.url
    lic = main or declared
    if not clauses and lic is not None:
        clauses = clauses_for(lic)
    return lic, dedupe_clauses(clauses)


def _config(path: Path, ev: ModelEvidence) -> None:
    if not path.is_file():
        return
    try:
        config = json.loads(_read(path))
    except json.JSONDecodeError:
        ev.notes.append(f"{path.name} is not valid JSON")
        return
    if not isinstance(config, dict):
        return
    archs = _strings(config.get("architectures"))
    arch = archs[0] if archs else _strings(config.get("model_type"))[:1]
    if arch:
        ev.architecture = arch if isinstance(arch, str) else arch[0]
        ev.metadata["config.architectures"] = archs or arch
        ev.sources.append(Source("hf-dir", str(path), "architectures"))
