"""The shared vocabulary of openness: evidence about a model, each fact with its source.

Sources (GGUF metadata, a Hugging Face model directory, Hub metadata, MOF YAML records, the
shipped catalog) produce `Evidence`; licence analysis produces `Clause`s; verdicts read both.
Nothing here knows about HTTP or serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# The Model Openness Framework's 17 components, in the MOT's spelling.
COMPONENTS = (
    "Model architecture",
    "Model parameters (Final)",
    "Evaluation results",
    "Model card",
    "Data card",
    "Technical report",
    "Sample model outputs",
    "Training code",
    "Inference code",
    "Evaluation code",
    "Evaluation data",
    "Supporting libraries and tools",
    "Datasets",
    "Data preprocessing code",
    "Model parameters (Intermediate)",
    "Research paper",
    "Model metadata",
)
ComponentName = str  # one of COMPONENTS

# Restriction clause kinds: a fixed, documented vocabulary (docs/openness.md).
ClauseKind = Literal[
    "user-threshold",
    "attribution",
    "use-policy",
    "output-restriction",
    "non-commercial",
    "research-only",
    "geographic",
    "revocable",
    "pass-through",
    "share-alike",
]
CLAUSE_KINDS: tuple[ClauseKind, ...] = get_args(ClauseKind)


@dataclass(frozen=True)
class Source:
    """Where a fact comes from, precise enough to cite."""

    kind: Literal["gguf", "hf-dir", "hf-hub", "mof", "catalog", "license-text", "index"]
    ref: str  # a file path, URL, catalog id or MOT record name
    detail: str = ""  # the key, field or file inside `ref`, e.g. "general.license"

    def cite(self) -> str:
        return f"{self.ref}#{self.detail}" if self.detail else self.ref


@dataclass(frozen=True)
class Span:
    """A quoted stretch of a licence text, by character offsets into that text."""

    start: int
    end: int
    quote: str


@dataclass(frozen=True)
class Clause:
    kind: ClauseKind
    evidence: Span
    source: Source
    threshold: int | None = None  # user-threshold only: the number of users (or revenue)


@dataclass
class License:
    spdx: str | None  # an SPDX id or expression, or None for a licence SPDX does not list
    name: str | None  # a human name ("Llama 3.1 Community License")
    url: str | None = None
    text: str | None = None
    source: Source | None = None


@dataclass
class Component:
    """A released artefact (MOF component) and its licence."""

    name: ComponentName
    license: str | None = None  # SPDX id or licence name; None means no licence was found
    url: str | None = None
    source: Source | None = None


@dataclass
class Evidence:
    """Everything known about one model, merged from its sources."""

    model: str
    name: str | None = None
    producer: str | None = None
    license: License | None = None
    components: dict[ComponentName, Component] = field(default_factory=dict)
    base_models: list[str] = field(default_factory=list)  # nearest first
    datasets: list[str] = field(default_factory=list)
    clauses: list[Clause] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
