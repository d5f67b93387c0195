"""The usage ledger: one row per request (member, key, model, node, tokens, latency, status).

`usage` sums it per member and model; `contribution` sums, per member, the tokens that nodes the
member owns served to requests of other members. Pass ``member_id`` (for a member key: the
principal's own, see `keys.visible_member`) to restrict either to one member.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db
from .prepared import RowsInsert


@dataclass(frozen=True)
class LedgerEntry:
    member_id: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    status: int
    key_id: int | None = None
    node_id: int | None = None
    request_id: str = field(default_factory=lambda: f"req-{uuid.uuid4().hex}")
    ts: datetime = field(default_factory=db.now)


@dataclass(frozen=True)
class UsageRow:
    member_id: int
    member: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class ContributionRow:
    member_id: int
    member: str
    requests: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record(engine: Engine, entry: LedgerEntry) -> None:
    """Add one request to the ledger (committed when this returns)."""
    with db.write(engine) as conn:
        record_in(conn, [entry])


_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
_INSERT = RowsInsert(db.ledger)


def record_in(conn: Connection, entries: Sequence[LedgerEntry]) -> None:
    """Add requests to the ledger within the caller's write transaction."""
    if entries:
        _INSERT.execute(conn, [{c: getattr(e, c) for c in _COLUMNS} for e in entries])


def usage(
    engine: Engine, *, member_id: int | None = None, since: datetime | None = None
) -> list[UsageRow]:
    """Requests and tokens per member and model, optionally for one member and/or since a time."""
    lg, m = db.ledger, db.members
    query = (
        sa.select(
            lg.c.member_id,
            m.c.name,
            lg.c.model,
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((lg.c.status >= 400, 1), else_=0)).label("errors"),
            sa.func.sum(lg.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(lg.c.completion_tokens).label("completion_tokens"),
        )
        .join(m, m.c.id == lg.c.member_id)
        .group_by(lg.c.member_id, m.c.name, lg.c.model)
        .order_by(m.c.name, lg.c.member_id, lg.c.model)
    )
    if member_id is not None:
        query = query.where(lg.c.member_id == member_id)
    if since is not None:
        query = query.where(lg.c.ts >= since)
    with db.read(engine) as conn:
        return [
            UsageRow(
                r.member_id,
                r.name,
                r.model,
                int(r.requests),
                int(r.errors),
                int(r.prompt_tokens),
                int(r.completion_tokens),
            )
            for r in conn.execute(query)
        ]


def contribution(
    engine: Engine, *, member_id: int | None = None, since: datetime | None = None
) -> list[ContributionRow]:
    """Per node-owning member: requests and tokens its nodes served for other members."""
    lg, n, m = db.ledger, db.nodes, db.members
    query = (
        sa.select(
            n.c.member_id,
            m.c.name,
            sa.func.count().label("requests"),
            sa.func.sum(lg.c.prompt_tokens + lg.c.completion_tokens).label("tokens"),
        )
        .select_from(lg.join(n, n.c.id == lg.c.node_id).join(m, m.c.id == n.c.member_id))
        .where(lg.c.member_id != n.c.member_id)
        .group_by(n.c.member_id, m.c.name)
        .order_by(m.c.name, n.c.member_id)
    )
    if member_id is not None:
        query = query.where(n.c.member_id == member_id)
    if since is not None:
        query = query.where(lg.c.ts >= since)
    with db.read(engine) as conn:
        return [
            ContributionRow(r.member_id, r.name, int(r.requests), int(r.tokens))
            for r in conn.execute(query)
        ]


def entries(
    engine: Engine,
    *,
    member_id: int | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[LedgerEntry]:
    """The newest ledger rows (newest first), optionally for one member."""
    lg = db.ledger
    query = sa.select(lg).order_by(lg.c.ts.desc(), lg.c.request_id).limit(limit)
    if member_id is not None:
        query = query.where(lg.c.member_id == member_id)
    if since is not None:
        query = query.where(lg.c.ts >= since)
    with db.read(engine) as conn:
        return [LedgerEntry(**dict(r._mapping)) for r in conn.execute(query)]


__all__ = [
    "ContributionRow",
    "LedgerEntry",
    "UsageRow",
    "contribution",
    "entries",
    "record",
    "record_in",
    "usage",
]
