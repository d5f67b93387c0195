"""The one typed settings model. Precedence: defaults < config file < environment < flags.

Every field has a default and a description; `allmende serve --help` is generated from them and
`docs/config.md` lists them (a test keeps the two in step). Environment variables are the field
names upper-cased with the prefix ``ALLMENDE_`` (``ALLMENDE_PORT=9000``); the config file is YAML
with the same names (see `docs/config.md`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from .errors import ConfigError
from .openness.policy import OpennessPolicy

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
ENGINE_NAMES = ("llamacpp", "upstream", "fake", "bert")


class ModelSpec(BaseModel):
    """One served model. On the command line: ``--model [ID=]SOURCE``."""

    source: str = Field(
        description="A GGUF file or model directory, a packaged model name (`smollm2`, "
        "`all-minilm-l6-v2`), a Hugging Face id (`owner/repo` or `owner/repo:QUANT`), an "
        "OpenAI-compatible base URL (`http://host:port/v1`), or `fake`."
    )
    id: str | None = Field(
        default=None, description="The id clients use; derived from the source if not given."
    )
    engine: Literal["llamacpp", "upstream", "fake", "bert"] | None = Field(
        default=None, description="The engine; detected from the source if not given."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Engine options (see docs/engines.md)."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return cls.parse_flag(value)
        return value

    @model_validator(mode="after")
    def _check_id(self) -> ModelSpec:
        if self.id is not None and not ID_RE.match(self.id):
            raise ValueError(f"model id '{self.id}' must match {ID_RE.pattern}")
        return self

    @staticmethod
    def parse_flag(text: str) -> dict[str, Any]:
        """``[ID=]SOURCE`` into fields; ``=`` inside a URL's query does not count."""
        head, sep, tail = text.partition("=")
        if sep and "://" not in head and "/" not in head and tail:
            return {"id": head, "source": tail}
        return {"source": text}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALLMENDE_", extra="forbid")

    config_file: ClassVar[Path | None] = None

    host: str = Field(default="127.0.0.1", description="Interface to bind the HTTP server to.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    models: list[ModelSpec] = Field(
        default_factory=list,
        description="Models to serve; when empty, the packaged defaults (SmolLM2-135M-Instruct "
        "for chat, all-MiniLM-L6-v2 for embeddings).",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes sharing the port (more than one uses more cores for a "
        "gateway; only nodes and upstream models, since each process would load its own "
        "embedded models).",
    )
    context_length: int = Field(
        default=2048,
        ge=64,
        description="Context window (tokens) per sequence for embedded llama.cpp models.",
    )
    parallel: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Sequences an embedded llama.cpp model decodes together (batch slots).",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for embedded models; all cores if unset."
    )
    max_queue: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for a free slot per embedded model; beyond it "
        "clients get 503.",
    )
    retry_after: int = Field(
        default=2, ge=1, description="Seconds suggested in Retry-After when overloaded."
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes)."
    )
    upstream_timeout: float = Field(
        default=600.0, gt=0, description="Seconds to wait for an upstream server's response."
    )
    hub_download: bool = Field(
        default=True,
        description="Download Hugging Face ids that are not cached (needs network access).",
    )
    data_dir: str | None = Field(
        default=None,
        description="Directory for Allmende's state (the commons database); default "
        "~/.local/share/allmende.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the commons database (members, keys, ledger, audit), "
        "e.g. postgresql+psycopg://user@host/db; default: SQLite allmende.db in data_dir.",
    )
    database_sync: Literal["full", "normal"] = Field(
        default="normal",
        description="When a request's ledger and audit records count as written before the "
        "client hears back: normal = in the database's log (survives the gateway being killed; "
        "a power cut or OS crash can roll back the newest records, whole transactions), full = "
        "on disk (fsync before each answer; survives a power cut; about 0.15-0.7 ms more per "
        "request on this project's machine).",
    )
    audit_content: bool = Field(
        default=False,
        description="Also keep prompts and answers in the audit log (metadata only if off).",
    )
    insecure: bool = Field(
        default=False,
        description="Serve beyond loopback without any API key (anyone who can reach the port "
        "can use it).",
    )
    openness_policy: OpennessPolicy | None = Field(
        default=None,
        description="Openness rules a model must meet to be served (see docs/openness.md); "
        "a model that breaks them is refused at start.",
    )
    default_models: bool = Field(
        default=True,
        description="Serve the packaged default models when no model is configured; turn off "
        "for a gateway that serves only its contributed nodes.",
    )
    node_check_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between health checks of the contributed nodes (each also "
        "re-reads the node registry and the fair-share weights).",
    )
    node_timeout: float = Field(
        default=3.0,
        gt=0,
        description="Seconds a node has to answer a health check or accept a connection.",
    )
    fair_share_floor: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Fair-share weight of a member that contributes nothing (see "
        "docs/commons.md: weight = floor + the member's part of all contribution).",
    )
    contribution_window_hours: float = Field(
        default=24.0,
        gt=0,
        description="Hours of ledger history a member's contribution is summed over.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging level."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.config_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Settings:
        """Settings from a YAML file, the environment and flags (None flags are ignored)."""
        if config_file is not None and not config_file.is_file():
            raise ConfigError(f"Config file not found: {config_file}")
        overrides = {k: v for k, v in flags.items() if v is not None and v != ()}
        scoped = type("FileSettings", (cls,), {"config_file": config_file})
        try:
            return cls.model_validate(scoped(**overrides).model_dump())
        except ValidationError as exc:
            raise ConfigError(f"Invalid settings:\n{exc}") from None

    def binds_beyond_loopback(self) -> bool:
        return self.host not in ("127.0.0.1", "localhost", "::1")
