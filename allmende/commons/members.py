"""Members of the commons (organisations, teams).

Removing a member marks it removed (it is never deleted): its keys are revoked in the same
transaction and its nodes are marked removed, while its ledger and audit history stays and still
names it. The name becomes free for a new member, which gets a new id and no old history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError, InvalidRequestError, NotFoundError
from . import db

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    created: datetime
    removed: datetime | None = None


def _member(row: sa.Row[tuple[object, ...]]) -> Member:
    v = row._mapping
    return Member(
        cast(int, v["id"]),
        cast(str, v["name"]),
        cast(datetime, v["created"]),
        cast("datetime | None", v["removed"]),
    )


def get_member(conn: Connection, name: str) -> Member:
    """The active member called `name`, or `NotFoundError`."""
    m = db.members
    row = conn.execute(sa.select(m).where(m.c.name == name, m.c.removed.is_(None))).first()
    if row is None:
        raise NotFoundError(f"No member '{name}'.")
    return _member(row)


def add_member(engine: Engine, name: str) -> Member:
    if not NAME_RE.match(name):
        raise InvalidRequestError(f"member name '{name}' must match {NAME_RE.pattern}")
    created = db.now()
    try:
        with db.write(engine) as conn:
            member_id = conn.execute(
                sa.insert(db.members).values(name=name, created=created).returning(db.members.c.id)
            ).scalar_one()
    except IntegrityError:
        raise ConflictError(f"Member '{name}' already exists.") from None
    return Member(member_id, name, created)


def list_members(engine: Engine, *, include_removed: bool = False) -> list[Member]:
    m = db.members
    query = sa.select(m).order_by(m.c.name, m.c.id)
    if not include_removed:
        query = query.where(m.c.removed.is_(None))
    with db.read(engine) as conn:
        return [_member(row) for row in conn.execute(query)]


def find_member(engine: Engine, name: str) -> Member:
    with db.read(engine) as conn:
        return get_member(conn, name)


def remove_member(engine: Engine, name: str) -> Member:
    """Mark a member removed, revoke its keys and retire its nodes; history is kept."""
    at = db.now()
    with db.write(engine) as conn:
        member = get_member(conn, name)
        conn.execute(sa.update(db.members).where(db.members.c.id == member.id).values(removed=at))
        k = db.api_keys
        conn.execute(
            sa.update(k).where(k.c.member_id == member.id, k.c.revoked.is_(None)).values(revoked=at)
        )
        n = db.nodes
        conn.execute(
            sa.update(n).where(n.c.member_id == member.id, n.c.removed.is_(None)).values(removed=at)
        )
    return Member(member.id, member.name, member.created, at)


__all__ = [
    "Member",
    "add_member",
    "find_member",
    "get_member",
    "list_members",
    "remove_member",
]
