"""Inference nodes that members contribute (a minimal registry; the gateway adds health etc.)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import NotFoundError
from . import db
from .members import get_member


@dataclass(frozen=True)
class Node:
    id: int
    member: str
    name: str
    url: str
    created: datetime
    removed: datetime | None = None


def add_node(engine: Engine, member: str, name: str, url: str) -> Node:
    created = db.now()
    with db.write(engine) as conn:
        owner = get_member(conn, member)
        node_id = conn.execute(
            sa.insert(db.nodes)
            .values(member_id=owner.id, name=name, url=url, created=created)
            .returning(db.nodes.c.id)
        ).scalar_one()
    return Node(node_id, owner.name, name, url, created)


def list_nodes(engine: Engine, member: str | None = None) -> list[Node]:
    n, m = db.nodes, db.members
    query = (
        sa.select(n.c.id, m.c.name.label("member"), n.c.name, n.c.url, n.c.created, n.c.removed)
        .join(m, m.c.id == n.c.member_id)
        .where(n.c.removed.is_(None))
        .order_by(n.c.id)
    )
    if member is not None:
        query = query.where(m.c.name == member)
    with db.read(engine) as conn:
        return [
            Node(
                cast(int, r.id),
                cast(str, r.member),
                cast(str, r.name),
                cast(str, r.url),
                cast(datetime, r.created),
                cast("datetime | None", r.removed),
            )
            for r in conn.execute(query)
        ]


def remove_node(engine: Engine, node_id: int) -> None:
    n = db.nodes
    with db.write(engine) as conn:
        done = conn.execute(
            sa.update(n).where(n.c.id == node_id, n.c.removed.is_(None)).values(removed=db.now())
        )
        if done.rowcount == 0:
            raise NotFoundError(f"No node {node_id}.")


__all__ = ["Node", "add_node", "list_nodes", "remove_node"]
