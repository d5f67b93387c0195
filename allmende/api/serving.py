"""Services between routes and engines: engine events into OpenAI JSON bodies or SSE streams."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.responses import JSONResponse, StreamingResponse

from .. import fastjson
from ..commons.keys import Principal
from ..engines.base import Delta, Engine, Event, Usage
from ..errors import ModelNotFoundError, OverloadedError
from ..gateway import context
from ..gateway.service import Gateway
from ..protocol import (
    UNSUPPORTED,
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIModel,
    reject_unsupported,
)
from .errors import as_allmende_error, sse_error
from .gate import Gate, Outcome
from .metrics import Metrics

log = logging.getLogger("allmende.api")

Kind = Literal["chat", "completion"]
_background: set[asyncio.Task[None]] = set()


class ModelRegistry:
    """The served engines by id: local ones (loaded at start) and the gateway's (the models
    contributed nodes offer, which come and go)."""

    def __init__(self, engines: list[Engine], gateway: Gateway | None = None) -> None:
        self.engines = {e.model_id: e for e in engines}
        self.gateway = gateway
        self.ready = False
        self.failed: str | None = None

    def listed(self) -> list[Engine]:
        """What `/v1/models` shows: local engines, then the models some node offers now."""
        found = list(self.engines.values())
        if self.gateway is not None:
            found += [e for e in self.gateway.available() if e.model_id not in self.engines]
        return found

    def find(self, model_id: str) -> Engine | None:
        engine = self.engines.get(model_id)
        if engine is None and self.gateway is not None:
            engine = self.gateway.get(model_id)
        return engine

    def get(self, model_id: str) -> Engine:
        engine = self.find(model_id)
        if engine is None:
            served = ", ".join(e.model_id for e in self.listed()) or "none"
            raise ModelNotFoundError(
                f"The model '{model_id}' does not exist. Served models: {served}.",
                param="model",
            )
        if not self.ready and model_id in self.engines:
            raise OverloadedError("The server is still loading models.", retry_after=2)
        return engine


class JSONBody(JSONResponse):
    """A JSON response rendered by orjson where it can (`fastjson`): the same compact UTF-8 as
    Starlette's, several times faster, which shows on a gateway's hot path."""

    def render(self, content: Any) -> bytes:
        return fastjson.dumps(content)


def check_request(request: OpenAIModel, route: str) -> None:
    """Reject known-but-unsupported fields; log unknown ones."""
    if not request.model_extra:
        return
    reject_unsupported(request)
    unknown = [f for f in request.unknown_fields() if f not in UNSUPPORTED]
    if unknown:
        log.info("%s: ignoring unknown request fields %s", route, ", ".join(unknown))


@dataclass
class _Choice:
    text: str = ""
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    started: bool = False

    def add(self, delta: Delta) -> None:
        self.text += delta.text or ""
        for call in delta.tool_calls or []:
            slot = self.tool_calls.setdefault(
                call.get("index", 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            slot["id"] = call.get("id") or slot["id"]
            fn = call.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
        self.finish_reason = delta.finish_reason or self.finish_reason


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


class Generation:
    """One chat or completion request against one engine, as JSON or as SSE."""

    def __init__(
        self,
        kind: Kind,
        engine: Engine,
        request: ChatCompletionRequest | CompletionRequest,
        metrics: Metrics,
        gate: Gate | None = None,
        principal: Principal | None = None,
        *,
        via: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.engine = engine
        self.request = request
        self.gate = gate
        self.principal = principal
        self.model = request.model
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-{os.urandom(16).hex()}"  # as random as uuid4().hex, 4x cheaper
        self.created = int(time.time())
        self.started = time.perf_counter()
        self.endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        self.series = metrics.series(self.model, self.endpoint)
        self.context = context.RequestContext(principal.member_id if principal else None, via=via)
        # The answer so far, per choice: kept only when the audit log records content.
        self.answer: dict[int, str] | None = (
            {} if gate is not None and gate.settings.audit_content and principal else None
        )

    def _seen(self, delta: Delta) -> None:
        if self.answer is not None and delta.text:
            self.answer[delta.index] = self.answer.get(delta.index, "") + delta.text

    def _content(self) -> dict[str, Any] | None:
        if self.answer is None:
            return None
        request = self.request.model_dump(mode="json", exclude_unset=True)
        asked = request.get("messages") if self.kind == "chat" else request.get("prompt")
        return {"request": asked, "answer": [self.answer[i] for i in sorted(self.answer)]}

    def _events(self) -> AsyncIterator[Event]:
        if isinstance(self.request, ChatCompletionRequest):
            return self.engine.chat(self.request)
        return self.engine.complete(self.request)

    def _done(self, status: int, usage: Usage | None) -> Outcome:
        m = self.series
        elapsed = time.perf_counter() - self.started
        m.count(status)
        m.latency.observe(elapsed)
        if usage is not None:
            m.prompt_tokens.inc(usage.prompt_tokens)
            m.completion_tokens.inc(usage.completion_tokens)
        return Outcome(
            model=self.model,
            endpoint=self.endpoint,
            status=status,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_ms=int(elapsed * 1000),
            request_id=self.id,
            node_id=self.context.node_id,
            content=self._content(),
        )

    async def _finish(self, status: int, usage: Usage | None) -> None:
        """Metrics, then ledger and audit, committed before the client sees the end."""
        outcome = self._done(status, usage)
        if self.gate is not None:
            await self.gate.account(self.principal, outcome)

    def _finish_later(self, status: int) -> None:
        """For a request whose client went away: account without awaiting (we are cancelled)."""
        outcome = self._done(status, None)
        if self.gate is not None:
            task = asyncio.get_running_loop().create_task(
                self.gate.account(self.principal, outcome)
            )
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def respond(self) -> JSONBody | StreamingResponse:
        in_flight = self.series.in_flight
        in_flight.inc()
        events = self._events()
        token = context.current.set(self.context)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = Usage()
        except BaseException as exc:
            in_flight.dec()
            if not isinstance(exc, Exception):
                self._finish_later(499)
                raise
            error = as_allmende_error(exc)
            await self._finish(error.status, None)
            raise error from None
        finally:
            context.current.reset(token)
        self.series.ttft.observe(time.perf_counter() - self.started)
        if self.request.stream:
            return StreamingResponse(
                self._sse(first, events),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            return JSONBody(await self._collect(first, events))
        finally:
            in_flight.dec()

    async def _collect(self, first: Event, events: AsyncIterator[Event]) -> dict[str, Any]:
        choices: dict[int, _Choice] = {}
        usage = Usage()
        try:
            event: Event | None = first
            while event is not None:
                if isinstance(event, Usage):
                    usage = event
                else:
                    self._seen(event)
                    choices.setdefault(event.index, _Choice()).add(event)
                event = await anext(events, None)
        except Exception as exc:
            error = as_allmende_error(exc)
            await self._finish(error.status, None)
            raise error from None
        await self._finish(200, usage)
        return {
            "id": self.id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [self._final_choice(i, c) for i, c in sorted(choices.items())],
            "usage": _usage(usage),
        }

    def _final_choice(self, index: int, choice: _Choice) -> dict[str, Any]:
        if self.kind == "completion":
            return {
                "index": index,
                "text": choice.text,
                "logprobs": None,
                "finish_reason": choice.finish_reason,
            }
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.text if choice.text or not choice.tool_calls else None,
            "refusal": None,
        }
        if choice.tool_calls:
            message["tool_calls"] = [choice.tool_calls[k] for k in sorted(choice.tool_calls)]
        return {
            "index": index,
            "message": message,
            "logprobs": None,
            "finish_reason": choice.finish_reason,
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.request.include_usage():
            body["usage"] = _usage(usage) if usage is not None else None
        return f"data: {fastjson.dumps(body).decode()}\n\n"

    def _stream_choice(self, delta: Delta, opened: set[int]) -> dict[str, Any]:
        if self.kind == "completion":
            return {
                "index": delta.index,
                "text": delta.text or "",
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
        body: dict[str, Any] = {}
        if delta.index not in opened:
            opened.add(delta.index)
            body["role"] = "assistant"
        if delta.text is not None:
            body["content"] = delta.text
        if delta.tool_calls:
            body["tool_calls"] = delta.tool_calls
        return {
            "index": delta.index,
            "delta": body,
            "logprobs": None,
            "finish_reason": delta.finish_reason,
        }

    async def _sse(self, first: Event, events: AsyncIterator[Event]) -> AsyncIterator[str]:
        opened: set[int] = set()
        usage: Usage | None = None
        finished = False
        try:
            event: Event | None = first
            while event is not None:
                if isinstance(event, Usage):
                    usage = event
                else:
                    self._seen(event)
                    yield self._chunk([self._stream_choice(event, opened)])
                event = await anext(events, None)
            if self.request.include_usage():
                yield self._chunk([], usage or Usage())
            finished = True
            await self._finish(200, usage)
            yield "data: [DONE]\n\n"
        except Exception as exc:
            error = as_allmende_error(exc)
            if not finished:
                finished = True
                await self._finish(error.status, usage)
            yield sse_error(error)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            self.series.in_flight.dec()
            if not finished:
                self._finish_later(499)  # the client went away; the generation was cancelled
