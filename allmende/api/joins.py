"""``POST /v1/nodes/join``: a member's node registers itself with a join token.

The token (``alj-...``, from ``allmende nodes token`` or ``POST /v1/admin/nodes/tokens``) is the
credential, sent as ``Authorization: Bearer``; no API key is needed. Before the node is added,
the gateway lists the node's models at the given URL, so a URL the gateway cannot reach is
refused (400) while the token is still unused. The node is added for the token's member, the
token is used up in the same transaction, and an audit record ``node.join`` names both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from ..commons import joins, nodes
from ..errors import AuthenticationError, OverloadedError
from ..gateway.pool import probe
from ..gateway.service import Gateway
from .admin import Body, _node
from .gate import Gate

router = APIRouter()
log = logging.getLogger("allmende.gateway")


class Join(Body):
    url: Annotated[str, Field(max_length=2048)]
    name: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None
    slots: Annotated[int, Field(default=4, ge=1, le=nodes.MAX_SLOTS)] = 4
    api_key: Annotated[str | None, Field(default=None, min_length=1, max_length=512)] = None


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not joins.looks_like_token(token.strip()):
        raise AuthenticationError(
            "Joining needs a join token (alj-...) as 'Authorization: Bearer'; an admin creates "
            "one with 'allmende nodes token --member NAME'."
        )
    return token.strip()


@router.post("/v1/nodes/join", status_code=201)
async def join(body: Join, request: Request) -> dict[str, Any]:
    """Add the node at ``url`` for the join token's member (the token works once)."""
    gate: Gate = request.app.state.gate
    if gate.engine is None or gate.audit is None:
        raise OverloadedError("The server is still starting.", retry_after=1)
    database, audit = gate.engine, gate.audit
    secret = _token(request)
    await asyncio.to_thread(joins.check, database, secret)  # 401 before anything else
    url = nodes.check_url(body.url)
    gateway: Gateway = request.app.state.gateway
    models = await probe(url, body.api_key, gateway.pool.timeout, gateway.pool.instance)

    _, node = await asyncio.to_thread(
        joins.redeem,
        database,
        secret,
        url,
        name=body.name,
        slots=body.slots,
        api_key=body.api_key,
        audit=audit,
    )
    try:
        await gateway.pool.refresh()  # offer its models now, not at the next health check
    except Exception:  # the node is in; the periodic check will pick it up
        log.exception("Checking the nodes after node %d joined failed", node.id)
    return {**_node(node), "models": models}


__all__ = ["router"]
