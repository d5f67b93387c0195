"""The engine seam: one narrow interface every model backend implements.

An engine serves one model id. It declares what it can do as data (`Capabilities`) and answers
three calls, each with OpenAI request models in and plain events out:

- `chat(request)` and `complete(request)` yield `Delta` events (text or tool-call pieces per choice,
  then a finish reason) and one final `Usage`; the API layer turns them into JSON or SSE.
- `embed(texts)` returns vectors and the prompt token count.

Engines know nothing of HTTP, members or policy. They raise `allmende.errors` types only.
Closing the async iterator early (client gone) must stop the generation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..errors import InvalidRequestError
from ..protocol import ChatCompletionRequest, CompletionRequest


@dataclass(frozen=True)
class Capabilities:
    chat: bool = False
    completions: bool = False
    embeddings: bool = False
    tools: bool = False
    json_schema: bool = False


@dataclass
class Delta:
    """A piece of one choice: text, tool calls (OpenAI delta dicts), and/or its finish reason."""

    index: int = 0
    text: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


Event = Delta | Usage


@dataclass
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass
class ModelCard:
    """What `/v1/models` says about a model."""

    id: str
    owned_by: str = "allmende"
    created: int = 0
    context_length: int | None = None
    engine: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class EngineOptions(BaseModel):
    """Engine-specific options; each engine subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid")


class Engine(ABC):
    """One served model. Subclasses set `name`, `capabilities` and `Options`."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    Options: ClassVar[type[EngineOptions]] = EngineOptions

    def __init__(self, model_id: str, source: str, options: EngineOptions) -> None:
        self.model_id = model_id
        self.source = source
        self.options = options

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model. Called once before serving; may take long."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abstractmethod
    def card(self) -> ModelCard: ...

    def queue_depth(self) -> int:
        """Requests waiting for this engine (reported in /metrics)."""
        return 0

    def running(self) -> int:
        """Sequences being generated right now (reported in /metrics)."""
        return 0

    def batch_tokens(self) -> int:
        """Tokens in the engine's most recent decode step (reported in /metrics)."""
        return 0

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Event]:
        raise InvalidRequestError(
            f"The model '{self.model_id}' does not support chat completions.", param="model"
        )

    def complete(self, request: CompletionRequest) -> AsyncIterator[Event]:
        raise InvalidRequestError(
            f"The model '{self.model_id}' does not support completions.", param="model"
        )

    async def embed(self, texts: list[str]) -> Embeddings:
        raise InvalidRequestError(
            f"The model '{self.model_id}' does not support embeddings.", param="model"
        )
