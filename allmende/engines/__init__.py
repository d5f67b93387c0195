"""Engines: the registry and the factory that builds one per served model.

Built-in engines are named here and imported lazily (llama.cpp is heavy). Third-party engines
register through the ``allmende.engines`` entry-point group; entry points load only when the
environment variable ``ALLMENDE_LOAD_PLUGINS`` allows them (a comma-separated list of names, or
``*``), so tests and default runs see only the built-ins.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from ..config import ModelSpec, Settings
from ..errors import ConfigError
from ..models.resolve import Resolved
from .base import Capabilities, Delta, Embeddings, Engine, EngineOptions, Event, ModelCard, Usage

__all__ = [
    "BUILTIN_ENGINES",
    "Capabilities",
    "Delta",
    "Embeddings",
    "Engine",
    "EngineOptions",
    "Event",
    "ModelCard",
    "Usage",
    "build_engine",
    "engine_class",
]

BUILTIN_ENGINES = {
    "llamacpp": "allmende.engines.llamacpp:LlamaCppEngine",
    "upstream": "allmende.engines.upstream:UpstreamEngine",
    "fake": "allmende.engines.fake:FakeEngine",
    "bert": "allmende.engines.bert:BertEngine",
}


def _plugins() -> dict[str, str]:
    allowed = os.environ.get("ALLMENDE_LOAD_PLUGINS", "")
    if not allowed:
        return {}
    names = {n.strip() for n in allowed.split(",")}
    return {
        ep.name: ep.value
        for ep in entry_points(group="allmende.engines")
        if "*" in names or ep.name in names
    }


def engine_class(name: str) -> type[Engine]:
    target = {**_plugins(), **BUILTIN_ENGINES}.get(name)
    if target is None:
        raise ConfigError(f"Unknown engine '{name}'. Known: {', '.join(sorted(BUILTIN_ENGINES))}.")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigError(f"Engine '{name}' ({target}) is not an Engine subclass.")
    return cls


def _defaults(cls: type[Engine], settings: Settings) -> dict[str, Any]:
    """Global settings that map onto fields of the engine's options."""
    known = {
        "context_length": settings.context_length,
        "parallel": settings.parallel,
        "threads": settings.threads,
        "max_queue": settings.max_queue,
        "retry_after": settings.retry_after,
        "timeout": settings.upstream_timeout,
    }
    return {k: v for k, v in known.items() if k in cls.Options.model_fields and v is not None}


def build_engine(resolved: Resolved, spec: ModelSpec, settings: Settings) -> Engine:
    cls = engine_class(resolved.engine)
    try:
        options = cls.Options.model_validate({**_defaults(cls, settings), **spec.options})
    except ValidationError as exc:
        raise ConfigError(f"Invalid options for model '{resolved.id}':\n{exc}") from None
    return cls(resolved.id, resolved.location, options)
