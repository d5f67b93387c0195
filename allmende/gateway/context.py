"""Who a request is for, and where it ran: set by the API layer, filled in by the gateway.

The API layer sets `current` before it asks an engine for events; the node pool reads the member
from it (for fair share) and writes the node that served the request into it (for the ledger).
The object is mutable and captured on the first event, so it works across the tasks a streaming
response runs in.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestContext:
    member_id: int | None = None
    node_id: int | None = None
    node_owner_id: int | None = None


current: ContextVar[RequestContext | None] = ContextVar("allmende_request", default=None)

__all__ = ["RequestContext", "current"]
