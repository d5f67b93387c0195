"""The upstream engine: one model of another OpenAI-compatible server (vLLM, llama-server, Ollama,
another Allmende) served under a local id.

Requests go upstream as they came, with the upstream's model name, always streamed with usage
(so metrics know the token counts even for non-streaming clients). Upstream errors map onto
Allmende's by status code and exception type; its 400s pass through with their message and code.
Closing the event stream closes the upstream response, so the upstream stops generating.

HTTP goes through aiohttp (one keep-alive connection pool per engine): on a gateway's hot path it
costs a fraction of the CPU per request that httpx does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from pydantic import Field

from .. import fastjson
from ..errors import (
    AllmendeError,
    ConfigError,
    InvalidRequestError,
    LoopDetectedError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ..gateway import context
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


JSON = {"Content-Type": "application/json"}

# SSE lines can carry large tool-call arguments: allow lines up to this many bytes.
READ_BUFFER = 4 * 1024 * 1024
# After `data: [DONE]`, how long to wait for the end of the body so the connection can be reused.
DRAIN_SECONDS = 0.5


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("retry-after", "")))
    except (TypeError, ValueError):
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


def _envelope(raw: bytes, reason: str) -> tuple[str, str | None, str | None]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace").strip()[:500]
    return _fields(body, reason)


def _text_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with its arguments as JSON text, as OpenAI sends them (some servers send
    an object)."""
    fn = call.get("function")
    if isinstance(fn, dict) and not isinstance(fn.get("arguments", ""), str):
        return {**call, "function": {**fn, "arguments": json.dumps(fn["arguments"])}}
    return call


def _answer(raw: bytes, text_key: str) -> list[Event]:
    """A non-streamed completion as the events a stream of it would give."""
    try:
        body = fastjson.loads(raw)
        if body.get("error") is not None:
            raise UpstreamError(f"The upstream server failed: {_fields(body, 'unknown error')[0]}")
        events: list[Event] = []
        for choice in body.get("choices") or []:
            source = (choice.get("message") or {}) if text_key == "content" else choice
            text = source.get(text_key) or None
            tool_calls = [  # as stream deltas, which carry each call's place
                {"index": i, **_text_arguments(call)}
                for i, call in enumerate(source.get("tool_calls") or [])
            ] or None
            reason = choice.get("finish_reason") or "stop"
            events.append(Delta(int(choice.get("index", 0)), text, tool_calls, reason))
        counts = body.get("usage") or {}
        events.append(
            Usage(int(counts.get("prompt_tokens") or 0), int(counts.get("completion_tokens") or 0))
        )
    except (ValueError, TypeError, AttributeError):
        raise UpstreamError("The upstream server sent a malformed response.") from None
    if len(events) == 1:
        raise UpstreamError("The upstream server sent a response without choices.")
    return events


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
        self._client: aiohttp.ClientSession | None = None
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
        self._client = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.options.connect_timeout,
                sock_read=self.options.timeout,
            ),
            connector=aiohttp.TCPConnector(limit=self.options.max_connections),
            cookie_jar=aiohttp.DummyCookieJar(),  # an API: no cookies to keep or send
            read_bufsize=READ_BUFFER,
            max_line_size=READ_BUFFER,
            max_field_size=READ_BUFFER,
        )
        if not discover:
            self._model = self.options.upstream_model or self.model_id
            return
        try:
            await self._discover()
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
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
        async with self._http().get(self.base + "/models") as response:
            raw = await response.read()
        try:
            if response.status >= 400:
                raise ValueError(response.status)
            body = json.loads(raw)
        except ValueError:
            log.warning("Upstream %s gave no model listing (HTTP %d)", self.base, response.status)
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

    def _http(self) -> aiohttp.ClientSession:
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
            await self._client.close()
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
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise UpstreamError(
                f"The upstream server for '{self.model_id}' is unreachable.", retry_after=retry
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeoutError(
                f"The upstream server for '{self.model_id}' timed out."
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError):
            raise UpstreamError(
                "The upstream server closed the stream early.", retry_after=retry
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"The upstream server for '{self.model_id}' failed ({type(exc).__name__})."
            ) from None

    def _status(self, response: aiohttp.ClientResponse, raw: bytes) -> AllmendeError:
        """An upstream error response as the Allmende error of matching status."""
        status = response.status
        message, param, code = _envelope(raw, response.reason or "")
        retry = _retry_after(response.headers)
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
        if status == 508:
            return LoopDetectedError(message)
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
        streamed = bool(request.stream)
        payload.update(model=await self._target(), stream=streamed)
        if streamed:
            payload["stream_options"] = {"include_usage": True}
        else:  # the client waits for the whole answer anyway: one JSON body is cheaper
            payload.pop("stream_options", None)
        with self._errors():
            async with self._http().post(
                self.base + path, data=fastjson.dumps(payload), headers=context.outgoing(JSON)
            ) as response:
                if response.status >= 400:
                    raise self._status(response, await response.read())
                if streamed:
                    async for event in self._events(response, text_key):
                        yield event
                    return
                raw = await response.read()
        for event in _answer(raw, text_key):
            yield event

    async def _events(
        self, response: aiohttp.ClientResponse, text_key: str
    ) -> AsyncIterator[Event]:
        usage: Usage | None = None
        finished = done = False
        async for raw in response.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                try:  # read the end of the body, so the connection goes back to the pool
                    await asyncio.wait_for(response.read(), DRAIN_SECONDS)
                except (TimeoutError, aiohttp.ClientError):
                    pass
                break
            try:
                chunk = fastjson.loads(data)
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
            async with self._http().post(
                self.base + "/embeddings", json=payload, headers=context.outgoing()
            ) as response:
                raw = await response.read()
        if response.status >= 400:
            raise self._status(response, raw)
        try:
            body = json.loads(raw)
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
