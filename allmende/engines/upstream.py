"""The upstream engine: one model of another OpenAI-compatible server (vLLM, llama-server, Ollama,
another Allmende) served under a local id.

Requests go upstream as they came, with the upstream's model name, always streamed with usage
(so metrics know the token counts even for non-streaming clients). Upstream errors map onto
Allmende's by status code and exception type; its 400s pass through with their message and code.
Closing the event stream closes the upstream response, so the upstream stops generating.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import Field

from ..errors import (
    AllmendeError,
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ..protocol import ChatCompletionRequest, CompletionRequest
from .base import Capabilities, Delta, Embeddings, Engine, EngineOptions, Event, ModelCard, Usage

log = logging.getLogger("allmende.engines.upstream")


class UpstreamOptions(EngineOptions):
    upstream_model: str | None = Field(
        default=None,
        description="The model name the upstream knows; discovered from its /models if unset.",
    )
    api_key: str | None = Field(default=None, description="API key sent upstream as Bearer.")
    api_key_env: str | None = Field(
        default=None, description="Name of an environment variable holding the API key."
    )
    timeout: float = Field(default=600.0, gt=0, description="Seconds to wait for upstream data.")
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to connect upstream.")
    max_connections: int = Field(default=100, ge=1, description="Concurrent upstream connections.")
    retry_after: int = Field(
        default=2, ge=1, description="Retry-After seconds when the upstream is unavailable."
    )


def base_url(source: str) -> str:
    """The upstream's API base, ending in /v1."""
    url = source.strip().rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _fields(body: Any, fallback: str) -> tuple[str, str | None, str | None]:
    """Message, param and code of an error body (an OpenAI envelope or something like it)."""
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or fallback
        param, code = error.get("param"), error.get("code")
        return (
            str(message),
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
    return str(error or fallback)[:500], None, None


def _envelope(response: httpx.Response) -> tuple[str, str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        body = response.text.strip()[:500]
    return _fields(body, response.reason_phrase)


class UpstreamEngine(Engine):
    name = "upstream"
    capabilities = Capabilities(
        chat=True, completions=True, embeddings=True, tools=True, json_schema=True
    )
    Options = UpstreamOptions
    options: UpstreamOptions

    def __init__(self, model_id: str, source: str, options: UpstreamOptions) -> None:
        super().__init__(model_id, source, options)
        self.base = base_url(source)
        self._client: httpx.AsyncClient | None = None
        self._model: str | None = None  # None until discovered (or given)
        self._context: int | None = None
        self._owned_by = "upstream"

    def adopt(self, entry: dict[str, Any]) -> None:
        """Take the context length and owner from an upstream listing entry."""
        context = entry.get("context_length") or entry.get("max_model_len")
        self._context = context if isinstance(context, int) else None
        self._owned_by = str(entry.get("owned_by") or "upstream")

    async def start(self, *, discover: bool = True) -> None:
        key = self.options.api_key
        if key is None and self.options.api_key_env:
            key = os.environ.get(self.options.api_key_env)
            if key is None:
                raise ConfigError(
                    f"Model '{self.model_id}': the environment variable "
                    f"{self.options.api_key_env} (api_key_env) is not set."
                )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limit = self.options.max_connections
        self._client = httpx.AsyncClient(
            base_url=self.base,
            headers=headers,
            timeout=httpx.Timeout(self.options.timeout, connect=self.options.connect_timeout),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
        if not discover:
            self._model = self.options.upstream_model or self.model_id
            return
        try:
            await self._discover()
        except httpx.TransportError as exc:
            log.warning(
                "Upstream %s for '%s' is unreachable (%s); serving anyway, requests fail "
                "until it is back.",
                self.base,
                self.model_id,
                type(exc).__name__,
            )

    async def _discover(self) -> None:
        """Pick the upstream model name from its listing, and note its context length."""
        wanted = self.options.upstream_model
        response = await self._http().get("/models")
        try:
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPStatusError, ValueError):
            log.warning(
                "Upstream %s gave no model listing (HTTP %d)", self.base, response.status_code
            )
            self._model = wanted or self.model_id
            return
        listed = body.get("data") if isinstance(body, dict) else None
        entries = {str(m["id"]): m for m in listed or [] if isinstance(m, dict) and "id" in m}
        names = ", ".join(entries) or "none"
        if wanted is None:
            if self.model_id in entries:
                wanted = self.model_id
            elif len(entries) == 1:
                wanted = next(iter(entries))
            else:
                raise ConfigError(
                    f"Model '{self.model_id}': the upstream {self.base} serves {names}; set the "
                    "option upstream_model to one of them."
                )
        entry = entries.get(wanted) or entries.get(f"{wanted}:latest")
        if entry is None:
            log.warning("Upstream %s does not list '%s' (it lists %s)", self.base, wanted, names)
        else:
            self.adopt(entry)
        self._model = wanted

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise UpstreamError(f"The model '{self.model_id}' has not been started.")
        return self._client

    async def _target(self) -> str:
        if self._model is None:  # the upstream was down at start; discover now
            with self._errors():
                await self._discover()
            assert self._model is not None
        return self._model

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.model_id,
            owned_by=self._owned_by,
            context_length=self._context,
            engine=self.name,
            source=self.base,
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Transport failures as Allmende errors (HTTP statuses are mapped by `_status`)."""
        retry = self.options.retry_after
        try:
            yield
        except ConfigError as exc:
            raise UpstreamError(exc.message, retry_after=retry) from None
        except httpx.ConnectError:
            raise UpstreamError(
                f"The upstream server for '{self.model_id}' is unreachable.", retry_after=retry
            ) from None
        except httpx.PoolTimeout:
            raise OverloadedError(
                f"All connections to the upstream of '{self.model_id}' are busy.",
                retry_after=retry,
            ) from None
        except httpx.TimeoutException:
            raise UpstreamTimeoutError(
                f"The upstream server for '{self.model_id}' timed out."
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise UpstreamError(
                "The upstream server closed the stream early.", retry_after=retry
            ) from None
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"The upstream server for '{self.model_id}' failed ({type(exc).__name__})."
            ) from None

    def _status(self, response: httpx.Response) -> AllmendeError:
        """An upstream error response as the Allmende error of matching status."""
        status = response.status_code
        message, param, code = _envelope(response)
        retry = _retry_after(response)
        if status in (400, 422):
            return InvalidRequestError(message, param=param, code=code)
        if status == 413:
            return RequestTooLargeError(message, param=param, code=code)
        if status == 404:
            cls = ModelNotFoundError if code == "model_not_found" else NotFoundError
            return cls(message, param=param, code=code)
        if status in (401, 403):
            return UpstreamError(
                f"The upstream server refused Allmende's credentials (HTTP {status})."
            )
        if status == 429:
            return RateLimitError(message, retry_after=retry or self.options.retry_after)
        if status == 503:
            return OverloadedError(message, retry_after=retry or self.options.retry_after)
        if status >= 500:
            return UpstreamError(f"The upstream server failed (HTTP {status}).")
        return UpstreamError(f"The upstream server rejected the request (HTTP {status}): {message}")

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Event]:
        return self._generate("/chat/completions", request, "content")

    def complete(self, request: CompletionRequest) -> AsyncIterator[Event]:
        return self._generate("/completions", request, "text")

    async def _generate(
        self, path: str, request: ChatCompletionRequest | CompletionRequest, text_key: str
    ) -> AsyncIterator[Event]:
        payload = request.model_dump(mode="json", exclude_unset=True, by_alias=True)
        if isinstance(request, CompletionRequest):
            payload.setdefault("max_tokens", request.max_tokens)  # OpenAI's default of 16
        payload.update(
            model=await self._target(), stream=True, stream_options={"include_usage": True}
        )
        with self._errors():
            async with self._http().stream("POST", path, json=payload) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status(response)
                async for event in self._events(response, text_key):
                    yield event

    async def _events(self, response: httpx.Response, text_key: str) -> AsyncIterator[Event]:
        usage: Usage | None = None
        finished = done = False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise UpstreamError("The upstream server sent a malformed event.") from None
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") is not None:
                message = _fields(chunk, "unknown error")[0]
                raise UpstreamError(f"The upstream server failed: {message}")
            if isinstance(chunk.get("usage"), dict):
                counts = chunk["usage"]
                usage = Usage(
                    int(counts.get("prompt_tokens") or 0), int(counts.get("completion_tokens") or 0)
                )
            for choice in chunk.get("choices") or []:
                source = (choice.get("delta") or {}) if text_key == "content" else choice
                text = source.get(text_key) or None
                tool_calls = source.get("tool_calls") or None
                reason = choice.get("finish_reason")
                finished = finished or reason is not None
                if text is None and tool_calls is None and reason is None:
                    continue  # role-only or empty
                yield Delta(int(choice.get("index", 0)), text, tool_calls, reason)
        if not done and not finished:
            raise UpstreamError("The upstream server closed the stream early.")
        yield usage or Usage()

    async def embed(self, texts: list[str]) -> Embeddings:
        payload = {"model": await self._target(), "input": texts, "encoding_format": "float"}
        with self._errors():
            response = await self._http().post("/embeddings", json=payload)
        if response.status_code >= 400:
            raise self._status(response)
        try:
            body = response.json()
            vectors: list[list[float]] = []
            for item in sorted(body["data"], key=lambda d: int(d.get("index", 0))):
                value = item["embedding"]
                if isinstance(value, str):  # base64 little-endian float32
                    raw = base64.b64decode(value)
                    value = list(struct.unpack(f"<{len(raw) // 4}f", raw))
                vectors.append([float(v) for v in value])
            tokens = int((body.get("usage") or {}).get("prompt_tokens") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamError(
                "The upstream server sent a malformed embeddings response."
            ) from None
        return Embeddings(vectors, tokens)
