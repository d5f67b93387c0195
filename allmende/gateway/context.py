"""Who a request is for, where it ran and which servers it passed: set by the API layer, filled
in by the gateway.

The API layer sets `current` before it asks an engine for events; the node pool reads the member
from it (for fair share) and writes the node that served the request into it (for the ledger).
The object is mutable and captured on the first event, so it works across the tasks a streaming
response runs in.

Every Allmende server has an instance id (random per `serve`, shared by its workers). A request
it sends to a node or an upstream carries the ids of the servers it has passed, its own last,
in the header ``Allmende-Via``; a server that finds its own id there answers 508
``loop_detected`` at once, so a node that leads back to its gateway (registered by mistake, or
through other gateways) fails fast instead of holding slots until timeouts. The node pool sends
the header with its health checks too, so such a node is marked down with that error.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import InvalidRequestError, LoopDetectedError

VIA_HEADER = "Allmende-Via"
MAX_VIA = 16  # servers a request may have passed; more is a loop or an abuse


@dataclass
class RequestContext:
    member_id: int | None = None
    node_id: int | None = None
    node_owner_id: int | None = None
    via: tuple[str, ...] = ()  # the servers the request passed, this one last


def new_instance() -> str:
    return secrets.token_hex(8)


def passed(header: str | None, instance: str) -> tuple[str, ...]:
    """The servers a request passed (from its `Allmende-Via` header), this one added; 508 if it
    passed this one already."""
    chain = tuple(v.strip() for v in (header or "").split(",") if v.strip())
    if instance in chain:
        raise LoopDetectedError(
            "This request came back to the Allmende server it passed before: a node of this "
            "gateway leads back to it. Remove that node ('allmende nodes list', 'nodes remove')."
        )
    if len(chain) >= MAX_VIA or any(len(v) > 64 for v in chain):
        raise InvalidRequestError(f"The {VIA_HEADER} header names too many servers.")
    return (*chain, instance)


def outgoing(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers for a request this server sends on behalf of the current request:
    `headers` and the servers the request passed."""
    ctx = current.get()
    out = dict(headers or {})
    if ctx is not None and ctx.via:
        out[VIA_HEADER] = ",".join(ctx.via)
    return out


current: ContextVar[RequestContext | None] = ContextVar("allmende_request", default=None)

__all__ = ["VIA_HEADER", "RequestContext", "current", "new_instance", "outgoing", "passed"]
