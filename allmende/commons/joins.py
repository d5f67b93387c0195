"""Join tokens: how a member's node registers itself with the gateway.

An admin creates a token for a member (``allmende nodes token --member NAME``). Whoever runs the
node presents it once, with the node's URL (``allmende nodes join GATEWAY --url NODE_URL``, or
``POST /v1/nodes/join``), and the gateway adds the node for that member, as ``nodes add`` would.
A token is ``alj-`` followed by 43 url-safe characters; only its SHA-256 is stored, like an API
key's. It works once, until it expires (24 hours unless the admin says otherwise), and may cap
the slots the node asks for.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import AuthenticationError, InvalidRequestError, NotFoundError
from . import db, nodes
from .audit import AuditLog, Entry
from .keys import hash_key, store_secret
from .members import get_member

TOKEN_PREFIX = "alj-"
PREFIX_LEN = len(TOKEN_PREFIX) + 8
DEFAULT_LIFETIME = timedelta(hours=24)
_UNKNOWN = "Incorrect join token provided."
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True)
class JoinToken:
    id: int
    member: str
    prefix: str
    created: datetime
    expires: datetime
    max_slots: int | None = None
    used: datetime | None = None
    node_id: int | None = None
    revoked: datetime | None = None
    member_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "member": self.member,
            "prefix": self.prefix,
            "created": self.created.isoformat(),
            "expires": self.expires.isoformat(),
            "max_slots": self.max_slots,
            "used": self.used.isoformat() if self.used else None,
            "node_id": self.node_id,
            "revoked": self.revoked.isoformat() if self.revoked else None,
        }


@dataclass(frozen=True)
class NewJoinToken:
    """A fresh token; `secret` is the only copy of the plaintext."""

    info: JoinToken
    secret: str


def looks_like_token(secret: str) -> bool:
    return secret.startswith(TOKEN_PREFIX)


def create_token(
    engine: Engine,
    member: str,
    *,
    expires: datetime | None = None,
    max_slots: int | None = None,
) -> NewJoinToken:
    """A one-time token with which a node joins for the active member `member`."""
    created = db.now()
    expires = expires or created + DEFAULT_LIFETIME
    if expires <= created:
        raise InvalidRequestError("expiry must be in the future", param="expires")
    if max_slots is not None and not 1 <= max_slots <= nodes.MAX_SLOTS:
        raise InvalidRequestError(f"max_slots must be 1..{nodes.MAX_SLOTS}.", param="max_slots")

    def insert(conn: Connection, secret: str) -> JoinToken:
        owner = get_member(conn, member)
        token_id = conn.execute(
            sa.insert(db.join_tokens)
            .values(
                member_id=owner.id,
                prefix=secret[:PREFIX_LEN],
                hash=hash_key(secret),
                slots=max_slots,
                created=created,
                expires=expires,
            )
            .returning(db.join_tokens.c.id)
        ).scalar_one()
        prefix = secret[:PREFIX_LEN]
        return JoinToken(
            token_id, owner.name, prefix, created, expires, max_slots, member_id=owner.id
        )

    info, secret = store_secret(engine, TOKEN_PREFIX, insert)
    return NewJoinToken(info, secret)


def _query() -> sa.Select[tuple[object, ...]]:
    t, m = db.join_tokens, db.members
    return sa.select(
        t.c.id,
        m.c.name.label("member"),
        t.c.prefix,
        t.c.hash,
        t.c.created,
        t.c.expires,
        t.c.slots,
        t.c.used,
        t.c.node_id,
        t.c.revoked,
        t.c.member_id,
        m.c.removed.label("member_removed"),
    ).join(m, m.c.id == t.c.member_id)


def _info(row: sa.Row[tuple[object, ...]]) -> JoinToken:
    return JoinToken(
        cast(int, row.id),
        cast(str, row.member),
        cast(str, row.prefix),
        cast(datetime, row.created),
        cast(datetime, row.expires),
        cast("int | None", row.slots),
        cast("datetime | None", row.used),
        cast("int | None", row.node_id),
        cast("datetime | None", row.revoked),
        cast(int, row.member_id),
    )


def list_tokens(engine: Engine, member: str | None = None) -> list[JoinToken]:
    """Every token (newest first), optionally of one member."""
    query = _query().order_by(db.join_tokens.c.id.desc())
    if member is not None:
        query = query.where(db.members.c.name == member)
    with db.read(engine) as conn:
        return [_info(r) for r in conn.execute(query)]


def check(engine: Engine, secret: str, *, at: datetime | None = None) -> JoinToken:
    """The token `secret` stands for, if it can still be used; else `AuthenticationError`."""
    row = None
    if looks_like_token(secret) and len(secret) > PREFIX_LEN:
        with db.read(engine) as conn:
            row = conn.execute(
                _query().where(db.join_tokens.c.prefix == secret[:PREFIX_LEN])
            ).first()
    return _usable(row, secret, at or db.now())


def _usable(row: sa.Row[tuple[object, ...]] | None, secret: str, at: datetime) -> JoinToken:
    stored = cast(str, row.hash) if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_key(secret))  # the same work for unknown ones
    if row is None or not matches:
        raise AuthenticationError(_UNKNOWN)
    info = _info(row)
    if info.revoked is not None:
        raise AuthenticationError("This join token has been revoked.")
    if info.used is not None:
        raise AuthenticationError("This join token has been used already.")
    if info.expires <= at:
        raise AuthenticationError("This join token has expired.")
    if row.member_removed is not None:
        raise AuthenticationError("The member of this join token has been removed.")
    return info


def revoke(engine: Engine, token_id: int) -> JoinToken:
    """Make an unused token unusable (revoking it again, or a used one, changes nothing)."""
    t = db.join_tokens
    with db.write(engine) as conn:
        conn.execute(
            sa.update(t)
            .where(t.c.id == token_id, t.c.revoked.is_(None), t.c.used.is_(None))
            .values(revoked=db.now())
        )
        row = conn.execute(_query().where(t.c.id == token_id)).first()
    if row is None:
        raise NotFoundError(f"No join token {token_id}.")
    return _info(row)


def redeem(
    engine: Engine,
    secret: str,
    url: str,
    *,
    name: str | None = None,
    slots: int = 4,
    api_key: str | None = None,
    audit: AuditLog | None = None,
) -> tuple[JoinToken, nodes.Node]:
    """Add the node at `url` for the token's member and use the token up, in one transaction
    (two nodes racing with one token: one joins, the other gets 401), with the audit record
    ``node.join`` (when `audit` is given) in the same transaction."""
    url = nodes.check_url(url)
    with db.write(engine) as conn:
        query = _query().where(db.join_tokens.c.prefix == secret[:PREFIX_LEN])
        if db.is_postgresql(conn):
            query = query.with_for_update(of=db.join_tokens)
        row = conn.execute(query).first() if looks_like_token(secret) else None
        token = _usable(row, secret, db.now())
        if token.max_slots is not None and slots > token.max_slots:
            raise InvalidRequestError(
                f"This join token allows at most {token.max_slots} slots.", param="slots"
            )
        node = nodes.add_node_in(conn, token.member, name, url, slots=slots, api_key=api_key)
        t = db.join_tokens
        done = conn.execute(
            sa.update(t)
            .where(t.c.id == token.id, t.c.used.is_(None), t.c.revoked.is_(None))
            .values(used=node.created, node_id=node.id)
        )
        if done.rowcount != 1:  # cannot happen under the lock; never add a node twice
            raise AuthenticationError("This join token has been used already.")
        if audit is not None:
            data = {
                "node_id": node.id,
                "member": node.member,
                "name": node.name,
                "url": node.url,
                "slots": node.slots,
                "has_api_key": node.api_key is not None,
                "token": token.prefix,
            }
            audit.append_in(conn, [Entry("node.join", data, member_id=node.member_id)])
    return token, node


__all__ = [
    "DEFAULT_LIFETIME",
    "TOKEN_PREFIX",
    "JoinToken",
    "NewJoinToken",
    "check",
    "create_token",
    "list_tokens",
    "looks_like_token",
    "redeem",
    "revoke",
]
