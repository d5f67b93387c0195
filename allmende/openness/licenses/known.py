"""Known licences (`known.yaml`): model licences with their known clauses, names, titles.

`known_license(id_or_name)` finds a model licence by its Hugging Face id, an alias, its name,
its ScanCode key or its SPDX id, ignoring case and punctuation. When only an id is known (a
model card says `license: llama3.1`, no text), `known_clauses` turns the licence's known clause
kinds into `Clause`s: their `Source` is ``catalog`` with the licence URL (else known.yaml) as
`ref` and ``known-licenses:<id>`` as `detail`, and their evidence is an empty span (start = end = 0,
quote "") because no text was read; the fact behind each clause is `KnownClause.note`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from allmende.openness.evidence import CLAUSE_KINDS, Clause, ClauseKind, Source, Span


@dataclass(frozen=True)
class KnownClause:
    kind: ClauseKind
    note: str = ""
    threshold: int | None = None
    checked: str = "unverified"  # primary | secondary | unverified


@dataclass(frozen=True)
class KnownLicense:
    id: str
    name: str
    url: str | None
    spdx: str | None
    scancode: str | None
    aliases: tuple[str, ...]
    titles: tuple[str, ...]
    clauses: tuple[KnownClause, ...]
    notes: str = ""


@dataclass(frozen=True)
class Catalog:
    models: tuple[KnownLicense, ...]
    spdx_names: dict[str, str]
    titles: dict[str, tuple[str, ...]]  # SPDX id -> identifying title phrases
    fingerprints: dict[str, tuple[int, tuple[str, ...]]]  # SPDX id -> (words, phrases)


def _key(name: str) -> str:
    name = name.lower().replace("licence", "license")
    name = re.sub(r"^licenseref-(?:scancode-)?", "", name)
    return re.sub(r"[^a-z0-9.+]+", "", name)


def _clause(raw: dict[str, Any]) -> KnownClause:
    kind = str(raw["kind"])
    if kind not in CLAUSE_KINDS:
        raise ValueError(f"known.yaml: unknown clause kind {kind!r}")
    threshold = raw.get("threshold")
    return KnownClause(
        kind=kind,
        note=str(raw.get("note", "")),
        threshold=int(threshold) if threshold is not None else None,
        checked=str(raw.get("checked", "unverified")),
    )


def _license(raw: dict[str, Any]) -> KnownLicense:
    return KnownLicense(
        id=str(raw["id"]),
        name=str(raw["name"]),
        url=raw.get("url"),
        spdx=raw.get("spdx"),
        scancode=raw.get("scancode"),
        aliases=tuple(str(a) for a in raw.get("aliases") or ()),
        titles=tuple(str(t) for t in raw.get("titles") or ()),
        clauses=tuple(_clause(c) for c in raw.get("clauses") or ()),
        notes=str(raw.get("notes", "")),
    )


@cache
def catalog() -> Catalog:
    """The parsed `known.yaml` (read once)."""
    text = resources.files(__package__).joinpath("known.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    prints = raw.get("fingerprints") or {}
    return Catalog(
        models=tuple(_license(m) for m in raw["models"]),
        spdx_names={str(k): str(v) for k, v in (raw.get("spdx_names") or {}).items()},
        titles={str(k): tuple(map(str, v)) for k, v in (raw.get("titles") or {}).items()},
        fingerprints={
            str(k): (int(v["words"]), tuple(map(str, v["phrases"]))) for k, v in prints.items()
        },
    )


@cache
def _index() -> dict[str, KnownLicense]:
    index: dict[str, KnownLicense] = {}
    for lic in catalog().models:
        for name in (lic.id, lic.name, lic.scancode, lic.spdx, *lic.aliases, *lic.titles):
            if name:
                index.setdefault(_key(name), lic)
    return index


def known_license(id_or_name: str) -> KnownLicense | None:
    """The model licence an id, alias, name, ScanCode key or SPDX id refers to, if known."""
    if not id_or_name or len(id_or_name) > 200:
        return None
    return _index().get(_key(id_or_name.strip()))


def known_clauses(lic: KnownLicense) -> list[Clause]:
    """A known licence's clauses, for reports that have an id but no licence text."""
    ref = lic.url or "allmende/openness/licenses/known.yaml"
    source = Source("catalog", ref, f"known-licenses:{lic.id}")
    empty = Span(0, 0, "")
    return [Clause(c.kind, empty, source, c.threshold) for c in lic.clauses]
