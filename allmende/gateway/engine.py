"""`PoolEngine`: one model served by the contributed nodes, behind the engine seam.

A request first waits for its turn in the model's fair-share queue (per member, weighted by
contribution), then goes to the least-loaded node offering the model. If that node fails before
the first token (unreachable, 5xx, overloaded, closed early), the request is retried on another
node, each node at most once; the client sees nothing of it but the latency. A node that dies
after the first token ends the stream with a clean error event (the API layer renders it) and
is marked down. Client errors (400, 404, 413) are the request's fault and are not retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..commons.fairshare import FairQueue
from ..engines.base import Capabilities, Embeddings, Engine, EngineOptions, Event, ModelCard, Usage
from ..engines.upstream import UpstreamEngine
from ..errors import (
    AllmendeError,
    InvalidRequestError,
    LoopDetectedError,
    NotFoundError,
    OverloadedError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ..protocol import ChatCompletionRequest, CompletionRequest
from . import context
from .pool import NodePool

T = TypeVar("T")
# The request's own fault: another node would refuse it too.
NOT_RETRIED = (InvalidRequestError, RequestTooLargeError)


def _node_failed(exc: AllmendeError) -> bool:
    """Whether an error says the node (not the request) is in trouble: mark it down."""
    return isinstance(exc, UpstreamError | UpstreamTimeoutError | LoopDetectedError)


class PoolEngine(Engine):
    name = "pool"
    capabilities = Capabilities(
        chat=True, completions=True, embeddings=True, tools=True, json_schema=True
    )

    def __init__(self, model_id: str, pool: NodePool, queue: FairQueue) -> None:
        super().__init__(model_id, "", EngineOptions())
        self.pool = pool
        self.queue = queue

    def card(self) -> ModelCard:
        nodes = self.pool.offering(self.model_id)
        lengths = [
            s.models[self.model_id].get("context_length")
            for s in nodes
            if isinstance(s.models[self.model_id].get("context_length"), int)
        ]
        owners = sorted({s.node.member for s in nodes})
        return ModelCard(
            id=self.model_id,
            owned_by=", ".join(owners) or "commons",
            context_length=min(lengths) if lengths else None,  # type: ignore[type-var]
            engine=self.name,
            source="nodes",
            extra={"nodes": len(nodes)},
        )

    def queue_depth(self) -> int:
        return self.queue.queued()

    def running(self) -> int:
        return sum(s.outstanding for s in self.pool.offering(self.model_id))

    def no_node(self) -> AllmendeError:
        return OverloadedError(
            f"No node serves '{self.model_id}' right now.",
            retry_after=self.pool.settings.retry_after,
        )

    def _no_node(self, last: AllmendeError | None) -> AllmendeError:
        return last if last is not None else self.no_node()

    def _context(self) -> context.RequestContext:
        """The request's context; 503 at once when no node offers the model (no queueing)."""
        if not self.pool.offering(self.model_id):
            raise self._no_node(None)
        return context.current.get() or context.RequestContext()

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Event]:
        return self._generate(lambda up: up.chat(request), bool(request.stream))

    def complete(self, request: CompletionRequest) -> AsyncIterator[Event]:
        return self._generate(lambda up: up.complete(request), bool(request.stream))

    async def _generate(
        self, start: Callable[[UpstreamEngine], AsyncIterator[Event]], streamed: bool = True
    ) -> AsyncIterator[Event]:
        """The events of the first node that answers. A request that does not stream goes to
        the node non-streamed (`UpstreamEngine`), so its whole answer is the first event: if
        that takes longer than the read timeout, the node is slow, not down, and another node
        would take as long; the 504 goes to the client and the node stays up."""
        ctx = self._context()
        async with self.queue.slot(ctx.member_id or 0) as ticket:
            tried: set[int] = set()
            last: AllmendeError | None = None
            while True:
                state = self.pool.pick(self.model_id, tried)
                if state is None:
                    raise self._no_node(last)
                tried.add(state.id)
                state.outstanding += 1
                try:
                    events = start(await self.pool.upstream(state, self.model_id))
                    try:
                        first = await anext(events)
                    except AllmendeError as exc:
                        await events.aclose()  # type: ignore[attr-defined]
                        if isinstance(exc, NOT_RETRIED):
                            raise
                        if not streamed and isinstance(exc, UpstreamTimeoutError):
                            raise
                        if _node_failed(exc):
                            self.pool.mark_down(state, exc.message)
                        last = exc
                        continue  # nothing was sent yet: try another node
                    ctx.node_id, ctx.node_owner_id = state.id, state.node.member_id
                    event: Event | None = first
                    try:
                        while event is not None:
                            if isinstance(event, Usage):
                                ticket.cost = event.prompt_tokens + event.completion_tokens
                            yield event
                            event = await anext(events, None)
                    except AllmendeError as exc:
                        if _node_failed(exc):
                            self.pool.mark_down(state, exc.message)
                        raise
                    finally:
                        await events.aclose()  # type: ignore[attr-defined]
                    state.served += 1
                    return
                finally:
                    state.outstanding -= 1

    async def embed(self, texts: list[str]) -> Embeddings:
        return await self._call(lambda up: up.embed(texts))

    async def _call(self, call: Callable[[UpstreamEngine], Awaitable[T]]) -> T:
        ctx = self._context()
        async with self.queue.slot(ctx.member_id or 0) as ticket:
            tried: set[int] = set()
            last: AllmendeError | None = None
            while (state := self.pool.pick(self.model_id, tried)) is not None:
                tried.add(state.id)
                state.outstanding += 1
                try:
                    result = await call(await self.pool.upstream(state, self.model_id))
                except NOT_RETRIED:
                    raise
                except NotFoundError as exc:
                    last = exc
                    continue
                except AllmendeError as exc:
                    if _node_failed(exc):
                        self.pool.mark_down(state, exc.message)
                    last = exc
                    continue
                finally:
                    state.outstanding -= 1
                ctx.node_id, ctx.node_owner_id = state.id, state.node.member_id
                state.served += 1
                if isinstance(result, Embeddings):
                    ticket.cost = result.prompt_tokens
                return result
            raise self._no_node(last)
