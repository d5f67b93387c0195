"""The commons over HTTP: what a member may read about itself, and what an admin may change.

Every route here needs an API key, even while the rest of the API is open (no key exists yet):
the first key comes from ``allmende keys create``. Member routes (``/v1/usage``, ``/v1/ledger``,
``/v1/contribution``, ``/v1/audit``, ``/v1/me``) show a member key its own member only (403 for
``?member=`` anyone else); an admin key sees everyone, or one member with ``?member=NAME``. The
``/v1/admin/...`` routes need an admin key (403 otherwise). Each change an admin makes appends
an audit record (``admin.member.add`` ...) naming the acting key, about the member it concerns,
in the same worker thread as the change itself. Errors are the project's own (`allmende.errors`)
and render as the OpenAI envelope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, cast

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from ..commons import db, joins, keys, ledger, members, nodes
from ..commons.audit import AuditLog, AuditRecord, format_ts
from ..commons.keys import KeyInfo, Limits, Principal
from ..errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
)
from ..gateway.service import Gateway
from .gate import Gate

router = APIRouter()
R = TypeVar("R")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


# ---- who is calling ------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An authenticated request to the commons: its principal, the database and the audit log."""

    principal: Principal
    engine: Engine
    audit: AuditLog


async def _caller(request: Request) -> Caller:
    gate: Gate = request.app.state.gate
    principal = await gate.admit(request)
    if principal is None:  # no key exists yet: the API is open, but the commons never is
        raise AuthenticationError(
            "This route needs an API key: create the first one with "
            "'allmende keys create --member NAME --scope admin'."
        )
    if gate.engine is None or gate.audit is None:
        raise OverloadedError("The server is still starting.", retry_after=1)
    return Caller(principal, gate.engine, gate.audit)


async def _admin(request: Request) -> Caller:
    caller = await _caller(request)
    keys.require_admin(caller.principal)
    return caller


MemberCall = Annotated[Caller, Depends(_caller)]
AdminCall = Annotated[Caller, Depends(_admin)]


async def _visible(caller: Caller, member: str | None) -> int | None:
    """The member id a query must be restricted to (None: everyone, for an admin key).

    A member key asking for another member gets 403 before any lookup, so it cannot learn
    which names exist; an admin key asking for an unknown member gets 404."""
    principal = caller.principal
    if member is None:
        return keys.visible_member(principal, None)
    if not principal.is_admin:
        if member != principal.member:
            raise PermissionDeniedError("A member key can only read its own member's records.")
        return principal.member_id
    return (await asyncio.to_thread(members.find_member, caller.engine, member)).id


# ---- parameters ----------------------------------------------------------------------------


def _time(value: str | None, param: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when it names no zone), or None when not given."""
    if value is None or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequestError(
            f"'{param}' must be an ISO 8601 time, e.g. 2026-01-01T00:00:00Z.", param=param
        ) from None


def _int(value: str | None, param: str, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise InvalidRequestError(
            f"'{param}' must be an integer from {low} to {high}.", param=param
        )
    return number


def _number(text: str) -> int | None:
    """A row id given in a path, or None when the text is not one (ASCII digits, < 2**63)."""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _key_ref(ref: str) -> str | int:
    """A key by id (digits) or by prefix (``alm-...``)."""
    number = _number(ref)
    return ref if number is None else number


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewMember(Body):
    name: str


LimitValue = Annotated[int | None, Field(default=None, ge=0)]


class KeyLimits(Body):
    """A key's limits; one left out (or null) is unlimited."""

    rpm: LimitValue = None
    tpm: LimitValue = None
    tpd: LimitValue = None

    def limits(self) -> Limits:
        return Limits(self.rpm, self.tpm, self.tpd)


class NewKey(KeyLimits):
    member: str
    scope: Literal["member", "admin"] = "member"
    expires: str | None = None


class NewNode(Body):
    url: Annotated[str, Field(max_length=2048)]
    member: str
    name: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None
    slots: Annotated[int, Field(default=4, ge=1, le=nodes.MAX_SLOTS)] = 4
    api_key: Annotated[str | None, Field(default=None, min_length=1, max_length=512)] = None


# ---- rendering -----------------------------------------------------------------------------


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def _limits(limits: Limits) -> dict[str, int | None]:
    return {"rpm": limits.rpm, "tpm": limits.tpm, "tpd": limits.tpd}


def _member(m: members.Member) -> dict[str, Any]:
    return {
        "object": "member",
        "id": m.id,
        "name": m.name,
        "created": _ts(m.created),
        "removed": _ts(m.removed),
    }


def _key(info: KeyInfo) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": info.id,
        "member": info.member,
        "prefix": info.prefix,
        "scope": info.scope,
        "created": _ts(info.created),
        "expires": _ts(info.expires),
        "revoked": _ts(info.revoked),
        "limits": _limits(info.limits),
    }


def _node(n: nodes.Node) -> dict[str, Any]:
    return {
        "object": "node",
        "id": n.id,
        "member": n.member,
        "name": n.name,
        "url": n.url,
        "slots": n.slots,
        "has_api_key": n.api_key is not None,  # the node's key itself is never shown
        "created": _ts(n.created),
        "removed": _ts(n.removed),
    }


def _entry(e: ledger.LedgerEntry) -> dict[str, Any]:
    return {"object": "ledger_entry", **asdict(e), "ts": format_ts(e.ts)}


def _record(r: AuditRecord) -> dict[str, Any]:
    return {"object": "audit_record", **r.to_dict()}


def _listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data}


# ---- admin actions: the change and its audit record, in one worker thread ------------------


def _audited(
    caller: Caller,
    kind: str,
    action: Callable[[], R],
    about: Callable[[R], tuple[int | None, dict[str, Any]]],
) -> R:
    """Run `action`, then append its audit record: about the member `about` names, by the
    calling key. Run in one thread, so a client that goes away cannot separate the two."""
    result = action()
    member_id, data = about(result)
    data = {**data, "by": caller.principal.member}
    caller.audit.append(kind, data, member_id=member_id, key_id=caller.principal.key_id)
    return result


async def _act(
    caller: Caller,
    kind: str,
    action: Callable[[], R],
    about: Callable[[R], tuple[int | None, dict[str, Any]]],
) -> R:
    return await asyncio.to_thread(_audited, caller, kind, action, about)


def _key_member_id(engine: Engine, key_id: int) -> int:
    k = db.api_keys
    with db.read(engine) as conn:
        found = conn.execute(sa.select(k.c.member_id).where(k.c.id == key_id)).scalar_one()
    return cast(int, found)


def _active_node(engine: Engine, node_id: int) -> tuple[int, dict[str, Any]]:
    """The owner's member id and what an audit record says about an active node, or 404."""
    n, m = db.nodes, db.members
    query = (
        sa.select(n.c.member_id, m.c.name.label("member"), n.c.name, n.c.url)
        .join(m, m.c.id == n.c.member_id)
        .where(n.c.id == node_id, n.c.removed.is_(None))
    )
    with db.read(engine) as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"No node {node_id}.")
    data = {"node_id": node_id, "member": row.member, "name": row.name, "url": row.url}
    return cast(int, row.member_id), data


def _member_for(engine: Engine, name: str, param: str) -> members.Member:
    """The active member named in a request body; 404 naming the field otherwise."""
    try:
        return members.find_member(engine, name)
    except NotFoundError as exc:
        raise NotFoundError(exc.message, param=param) from None


# ---- member routes -------------------------------------------------------------------------


@router.get("/v1/me")
async def me(caller: MemberCall) -> dict[str, Any]:
    """The calling key: its member, id, prefix, scope, expiry and limits."""
    p = caller.principal
    info = await asyncio.to_thread(keys.get_key, caller.engine, p.key_id)
    return {
        "object": "me",
        "member": p.member,
        "member_id": p.member_id,
        "key_id": p.key_id,
        "prefix": info.prefix,
        "scope": p.scope,
        "expires": _ts(info.expires),
        "limits": _limits(p.limits),
    }


@router.get("/v1/usage")
async def usage(
    caller: MemberCall, member: str | None = None, since: str | None = None
) -> dict[str, Any]:
    """Ledger totals by member and model: a member key sees its own, an admin key anyone's."""
    visible = await _visible(caller, member)
    start = _time(since, "since")
    rows = await asyncio.to_thread(ledger.usage, caller.engine, member_id=visible, since=start)
    return _listing([r.to_dict() for r in rows])


@router.get("/v1/ledger")
async def ledger_entries(
    caller: MemberCall,
    member: str | None = None,
    since: str | None = None,
    limit: str | None = None,
) -> dict[str, Any]:
    """The newest ledger rows, newest first (limit 1..1000, default 100)."""
    visible = await _visible(caller, member)
    start = _time(since, "since")
    count = _int(limit, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    rows = await asyncio.to_thread(
        ledger.entries, caller.engine, member_id=visible, since=start, limit=count
    )
    return _listing([_entry(e) for e in rows])


@router.get("/v1/contribution")
async def contribution(
    caller: MemberCall, member: str | None = None, since: str | None = None
) -> dict[str, Any]:
    """Per node-owning member: requests and tokens its nodes served for other members."""
    visible = await _visible(caller, member)
    start = _time(since, "since")
    rows = await asyncio.to_thread(
        ledger.contribution, caller.engine, member_id=visible, since=start
    )
    return _listing([r.to_dict() for r in rows])


@router.get("/v1/audit")
async def audit_records(
    caller: MemberCall,
    member: str | None = None,
    after_seq: str | None = None,
    limit: str | None = None,
) -> dict[str, Any]:
    """Audit records in seq order after `after_seq`; a member key sees its member's only."""
    visible = await _visible(caller, member)
    after = _int(after_seq, "after_seq", default=0, low=0, high=2**63 - 1)
    count = _int(limit, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    rows = await asyncio.to_thread(
        caller.audit.records, member_id=visible, after_seq=after, limit=count
    )
    return _listing([_record(r) for r in rows])


# ---- admin: members ------------------------------------------------------------------------


@router.get("/v1/admin/members")
async def list_members(
    caller: AdminCall, include_removed: Annotated[str | None, Query(alias="all")] = None
) -> dict[str, Any]:
    """Active members (``?all=true``: removed ones too)."""
    if include_removed not in (None, "true", "false", "1", "0"):
        raise InvalidRequestError("'all' must be true or false.", param="all")
    found = await asyncio.to_thread(
        members.list_members, caller.engine, include_removed=include_removed in ("true", "1")
    )
    return _listing([_member(m) for m in found])


@router.post("/v1/admin/members", status_code=201)
async def add_member(caller: AdminCall, body: NewMember) -> dict[str, Any]:
    def add() -> members.Member:
        try:
            return members.add_member(caller.engine, body.name)
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, param="name") from None

    added = await _act(caller, "admin.member.add", add, lambda m: (m.id, {"member": m.name}))
    return _member(added)


@router.delete("/v1/admin/members/{name}")
async def remove_member(caller: AdminCall, name: str) -> dict[str, Any]:
    """Mark a member removed: its keys are revoked and its nodes retired; history stays."""
    removed = await _act(
        caller,
        "admin.member.remove",
        lambda: members.remove_member(caller.engine, name),
        lambda m: (m.id, {"member": m.name}),
    )
    return _member(removed)


# ---- admin: keys ---------------------------------------------------------------------------


def _key_data(info: KeyInfo) -> dict[str, Any]:
    """What an audit record says about a key: never the key itself."""
    return {
        "key_id": info.id,
        "prefix": info.prefix,
        "member": info.member,
        "scope": info.scope,
        "expires": _ts(info.expires),
        "limits": _limits(info.limits),
    }


@router.get("/v1/admin/keys")
async def list_keys(caller: AdminCall, member: str | None = None) -> dict[str, Any]:
    """Keys (ids and prefixes; the keys themselves are not stored), optionally one member's."""
    if member is not None:
        await asyncio.to_thread(members.find_member, caller.engine, member)  # 404 if unknown
    found = await asyncio.to_thread(keys.list_keys, caller.engine, member)
    return _listing([_key(info) for info in found])


@router.post("/v1/admin/keys", status_code=201)
async def create_key(caller: AdminCall, body: NewKey) -> dict[str, Any]:
    """A new key. The response carries it (``key``) this once; only its hash is stored."""
    expires = _time(body.expires, "expires")
    owner_id = 0

    def create() -> keys.NewKey:
        nonlocal owner_id
        owner_id = _member_for(caller.engine, body.member, "member").id
        return keys.create_key(
            caller.engine, body.member, scope=body.scope, expires=expires, limits=body.limits()
        )

    new = await _act(caller, "admin.key.create", create, lambda k: (owner_id, _key_data(k.info)))
    return {**_key(new.info), "key": new.secret}


@router.delete("/v1/admin/keys/{key}")
async def revoke_key(caller: AdminCall, key: str) -> dict[str, Any]:
    """Revoke a key, given its id or prefix (revoking it again changes nothing)."""
    info = await _act(
        caller,
        "admin.key.revoke",
        lambda: keys.revoke_key(caller.engine, _key_ref(key)),
        lambda i: (_key_member_id(caller.engine, i.id), _key_data(i)),
    )
    return _key(info)


@router.put("/v1/admin/keys/{key}/limits")
async def set_limits(caller: AdminCall, key: str, body: KeyLimits) -> dict[str, Any]:
    """Replace a key's limits; those left out become unlimited."""
    info = await _act(
        caller,
        "admin.key.limits",
        lambda: keys.set_limits(caller.engine, _key_ref(key), body.limits()),
        lambda i: (_key_member_id(caller.engine, i.id), _key_data(i)),
    )
    return _key(info)


# ---- admin: audit and nodes ----------------------------------------------------------------


@router.get("/v1/admin/audit/verify")
async def verify_audit(caller: AdminCall) -> dict[str, Any]:
    """Check the whole hash chain (200 either way: ``ok`` says whether it holds)."""
    result = await asyncio.to_thread(caller.audit.verify)
    return {"object": "audit_verification", **asdict(result)}


@router.get("/v1/admin/nodes")
async def list_nodes(
    caller: AdminCall, request: Request, member: str | None = None
) -> dict[str, Any]:
    """Active nodes, optionally one member's, with what this gateway sees of each right now:
    ``status`` (up, down, or unchecked until the next health check), the models it offers,
    requests outstanding and served, and the last error."""
    if member is not None:
        await asyncio.to_thread(members.find_member, caller.engine, member)  # 404 if unknown
    found = await asyncio.to_thread(nodes.list_nodes, caller.engine, member)
    gateway: Gateway = request.app.state.gateway
    rows = []
    for n in found:
        row = _node(n)
        state = gateway.pool.nodes.get(n.id)
        row["status"] = "unchecked" if state is None else "up" if state.up else "down"
        row["models"] = sorted(state.models) if state is not None and state.up else []
        row["outstanding"] = state.outstanding if state is not None else 0
        row["served"] = state.served if state is not None else 0
        row["error"] = state.error if state is not None else None
        rows.append(row)
    return _listing(rows)


@router.post("/v1/admin/nodes", status_code=201)
async def add_node(caller: AdminCall, body: NewNode) -> dict[str, Any]:
    """Register a node a member contributes: an OpenAI-compatible server at `url`
    (``http(s)://HOST[:PORT][/PATH]``); ``name`` defaults to its host, ``slots`` (requests sent
    to it at once) to 4; ``api_key``, if given, is what the gateway sends it, never shown."""
    url = nodes.check_url(body.url)
    owner_id = 0

    def add() -> nodes.Node:
        nonlocal owner_id
        owner_id = _member_for(caller.engine, body.member, "member").id
        return nodes.add_node(
            caller.engine, body.member, body.name, url, slots=body.slots, api_key=body.api_key
        )

    def about(n: nodes.Node) -> tuple[int, dict[str, Any]]:
        data = {"node_id": n.id, "member": n.member, "name": n.name, "url": n.url}
        return owner_id, {**data, "slots": n.slots, "has_api_key": n.api_key is not None}

    return _node(await _act(caller, "admin.node.add", add, about))


class NewJoinToken(Body):
    member: str
    expires: str | None = None  # default: 24 hours from now
    max_slots: Annotated[int | None, Field(default=None, ge=1, le=nodes.MAX_SLOTS)] = None


def _join_token(t: joins.JoinToken) -> dict[str, Any]:
    return {
        "object": "join_token",
        "id": t.id,
        "member": t.member,
        "prefix": t.prefix,
        "created": _ts(t.created),
        "expires": _ts(t.expires),
        "max_slots": t.max_slots,
        "used": _ts(t.used),
        "node_id": t.node_id,
        "revoked": _ts(t.revoked),
    }


@router.post("/v1/admin/nodes/tokens", status_code=201)
async def create_join_token(caller: AdminCall, body: NewJoinToken) -> dict[str, Any]:
    """A one-time token with which a node of ``member`` joins (``POST /v1/nodes/join``). The
    response carries it (``token``) this once; only its hash is stored."""
    expires = _time(body.expires, "expires")
    owner_id = 0

    def create() -> joins.NewJoinToken:
        nonlocal owner_id
        owner_id = _member_for(caller.engine, body.member, "member").id
        return joins.create_token(
            caller.engine, body.member, expires=expires, max_slots=body.max_slots
        )

    def about(t: joins.NewJoinToken) -> tuple[int, dict[str, Any]]:
        return owner_id, {"token_id": t.info.id, "prefix": t.info.prefix, "member": t.info.member}

    new = await _act(caller, "admin.node.token", create, about)
    return {**_join_token(new.info), "token": new.secret}


@router.get("/v1/admin/nodes/tokens")
async def list_join_tokens(caller: AdminCall, member: str | None = None) -> dict[str, Any]:
    """Join tokens, newest first, optionally one member's: whether and by which node used."""
    if member is not None:
        await asyncio.to_thread(members.find_member, caller.engine, member)  # 404 if unknown
    found = await asyncio.to_thread(joins.list_tokens, caller.engine, member)
    return _listing([_join_token(t) for t in found])


@router.delete("/v1/admin/nodes/tokens/{token_id}")
async def revoke_join_token(caller: AdminCall, token_id: str) -> dict[str, Any]:
    """Make an unused join token unusable (a used one stays as it is)."""
    number = _number(token_id)
    if number is None:
        raise NotFoundError(f"No join token '{token_id}'.")

    def about(t: joins.JoinToken) -> tuple[int, dict[str, Any]]:
        return t.member_id, {"token_id": t.id, "prefix": t.prefix, "member": t.member}

    revoked = await _act(
        caller, "admin.node.token.revoke", lambda: joins.revoke(caller.engine, number), about
    )
    return _join_token(revoked)


@router.delete("/v1/admin/nodes/{node_id}")
async def remove_node(caller: AdminCall, node_id: str) -> dict[str, Any]:
    """Retire a node (its ledger history stays)."""
    number = _number(node_id)
    if number is None:
        raise NotFoundError(f"No node '{node_id}'.")

    def remove() -> tuple[int, dict[str, Any]]:
        found = _active_node(caller.engine, number)
        nodes.remove_node(caller.engine, number)
        return found

    await _act(caller, "admin.node.remove", remove, lambda found: found)
    return {"object": "node", "id": number, "deleted": True}


__all__ = ["router"]
