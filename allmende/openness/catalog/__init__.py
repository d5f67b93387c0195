"""The shipped openness catalog: one YAML file per model family, each fact with its source.

Entries follow `schema.json`; `validate_catalog` checks the files (for contributors and
`allmende catalog validate`), `load_catalog` reads them into `CatalogEntry` objects. Data derived
from the European Open Source AI Index is CC-BY 4.0 (see ATTRIBUTION.md).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allmende.openness.evidence import CLAUSE_KINDS, COMPONENTS, ClauseKind

CATALOG_DIR = Path(__file__).resolve().parent
MODELS_DIR = CATALOG_DIR / "models"
SCHEMA_PATH = CATALOG_DIR / "schema.json"

Rating = Literal["open", "partial", "closed"]
SourceKind = Literal["mot", "index", "license", "model-card", "paper"]


class CatalogError(ValueError):
    """The catalog files could not be read into entries."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogLicense(_Frozen):
    spdx: str | None
    name: str
    url: str | None = None
    clauses: tuple[ClauseKind, ...] = ()
    threshold: int | None = None  # user-threshold: monthly active users


class CatalogComponent(_Frozen):
    license: str | None = None
    url: str | None = None


class IndexRating(_Frozen):
    """The European Open Source AI Index's ratings of one system (CC-BY 4.0)."""

    system: str
    parameters: dict[str, Rating] = Field(default_factory=dict)


class CatalogSource(_Frozen):
    kind: SourceKind
    ref: str
    facts: tuple[str, ...]


class CatalogEntry(_Frozen):
    id: str
    name: str
    producer: str
    released: str | None = None
    type: str
    aliases: tuple[str, ...] = ()
    base_model: str | None = None
    license: CatalogLicense
    components: dict[str, CatalogComponent] = Field(default_factory=dict)
    index: IndexRating | None = None
    sources: tuple[CatalogSource, ...]


def _norm(name: str) -> str:
    """Lowercase, drop a Hub URL prefix, read runs of whitespace and '_' as '-'."""
    key = name.strip().lower()
    key = re.sub(r"^(https?://)?(www\.)?(huggingface\.co|hf\.co)/", "", key)
    return re.sub(r"[\s_]+", "-", key)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class Catalog:
    """Entries by id, with name matching and base-model lineage."""

    def __init__(self, entries: list[CatalogEntry]) -> None:
        self.entries: list[CatalogEntry] = sorted(entries, key=lambda e: e.id)
        self._by_id = {e.id: e for e in self.entries}
        self._patterns = [(e, _norm(p)) for e in self.entries for p in (e.id, e.name, *e.aliases)]

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, id: str) -> CatalogEntry | None:
        return self._by_id.get(id)

    def match(self, name: str) -> CatalogEntry | None:
        """The entry for an HF id, GGUF general.name/basename or alias; most specific wins.

        An exact alias beats any glob; among globs the one with the most literal characters wins.
        """
        key = _norm(name)
        if not key:
            return None
        best: CatalogEntry | None = None
        best_score = (-1, -1)
        for entry, pattern in self._patterns:
            if _is_glob(pattern):
                if not fnmatch.fnmatchcase(key, pattern):
                    continue
                score = (0, len(re.sub(r"[*?]|\[[^\]]*\]", "", pattern)))
            elif key == pattern:
                score = (1, len(pattern))
            else:
                continue
            if score > best_score:
                best, best_score = entry, score
        return best

    def lineage(self, id: str) -> list[str]:
        """Catalog ids of the base models, nearest first (stops at an unknown id or a cycle)."""
        chain: list[str] = []
        seen = {id}
        entry = self.get(id)
        while entry is not None and entry.base_model and entry.base_model not in seen:
            chain.append(entry.base_model)
            seen.add(entry.base_model)
            entry = self.get(entry.base_model)
        return chain


def _read(file: Path) -> Any:
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("released"), dt.date):
        data["released"] = data["released"].isoformat()  # an unquoted YAML date
    return data


def _files(path: Path | None) -> list[Path]:
    """The entry files in `path`: a models folder, or a folder holding `models/`."""
    folder = MODELS_DIR if path is None else path / "models" if (path / "models").is_dir() else path
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_catalog(path: Path | None = None) -> Catalog:
    """Read the catalog in `path` (a models folder, or a folder holding `models/`).

    Without a path, the catalog shipped with the package (read once and cached).
    """
    if path is None:
        return _shipped_catalog()
    entries: list[CatalogEntry] = []
    for file in _files(path):
        try:
            entries.append(CatalogEntry.model_validate(_read(file)))
        except (yaml.YAMLError, ValidationError) as exc:
            raise CatalogError(f"{file.name}: {exc}") from exc
    return Catalog(entries)


@functools.lru_cache(maxsize=1)
def _shipped_catalog() -> Catalog:
    return load_catalog(MODELS_DIR)


@functools.lru_cache(maxsize=1)
def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def validate_catalog(path: Path | None = None) -> list[str]:
    """Every problem in the catalog as a line "file: message"; an empty list means valid."""
    problems: list[str] = []
    entries: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (file name, data)
    alias_owner: dict[str, tuple[str, str]] = {}  # normalised alias -> (file, id)
    for file in _files(path):
        try:
            data = _read(file)
        except yaml.YAMLError as exc:
            problems.append(f"{file.name}: not valid YAML: {exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{file.name}: not a mapping")
            continue
        for err in sorted(_schema_validator().iter_errors(data), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            problems.append(f"{file.name}: {where}: {err.message}")
        id_ = data.get("id")
        if not isinstance(id_, str):
            continue
        if id_ != file.stem:
            problems.append(f"{file.name}: id '{id_}' does not match the file name")
        if id_ in entries:
            problems.append(f"{file.name}: duplicate id '{id_}' (also in {entries[id_][0]})")
            continue
        entries[id_] = (file.name, data)
        aliases = data.get("aliases")
        for alias in aliases if isinstance(aliases, list) else []:
            key = _norm(str(alias))
            owner = alias_owner.setdefault(key, (file.name, id_))
            if owner[1] != id_:
                problems.append(f"{file.name}: duplicate alias '{alias}' (also in {owner[0]})")
        problems.extend(f"{file.name}: {msg}" for msg in _entry_problems(data))
    for name, data in entries.values():
        base = data.get("base_model")
        if isinstance(base, str) and base not in entries:
            problems.append(f"{name}: unknown base_model '{base}'")
    problems.extend(_cycle_problems(entries))
    return problems


def _entry_problems(data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    components = data.get("components")
    for comp in components if isinstance(components, dict) else {}:
        if comp not in COMPONENTS:
            problems.append(f"unknown component '{comp}' (not one of the 17 MOF components)")
    lic = data.get("license")
    if isinstance(lic, dict):
        raw = lic.get("clauses")
        clauses: list[Any] = raw if isinstance(raw, list) else []
        for clause in clauses:
            if clause not in CLAUSE_KINDS:
                problems.append(f"unknown clause kind '{clause}'")
        threshold = lic.get("threshold")
        if "user-threshold" in clauses and not isinstance(threshold, int):
            problems.append("license lists user-threshold but gives no threshold")
        if threshold is not None and "user-threshold" not in clauses:
            problems.append("license gives a threshold but does not list user-threshold")
    return problems


def _cycle_problems(entries: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    reported: set[frozenset[str]] = set()
    for start, (name, _) in entries.items():
        path = [start]
        while True:
            base = entries[path[-1]][1].get("base_model")
            if not isinstance(base, str) or base not in entries:
                break
            if base in path:
                cycle = path[path.index(base) :]
                if base == start and frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.append(f"{name}: base_model cycle: {' -> '.join([*cycle, base])}")
                break
            path.append(base)
    return problems
