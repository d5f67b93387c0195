"""Inference nodes that members contribute: any OpenAI-compatible server, by its base URL.

A node belongs to one member; requests it serves for other members count as that member's
contribution (see `ledger.contribution`). `slots` is how many requests the gateway sends it at
once; `api_key`, if set, is sent to the node as ``Authorization: Bearer`` (it is stored as given,
since the gateway must present it; list views show only whether one is set). Removing a node
retires it: its ledger history stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import InvalidRequestError, NotFoundError
from . import db
from .members import get_member

MAX_SLOTS = 1024


@dataclass(frozen=True)
class Node:
    id: int
    member: str
    name: str
    url: str
    created: datetime
    removed: datetime | None = None
    slots: int = 4
    api_key: str | None = None
    member_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """For listings: everything but the key itself."""
        return {
            "id": self.id,
            "member": self.member,
            "name": self.name,
            "url": self.url,
            "slots": self.slots,
            "has_api_key": self.api_key is not None,
            "created": self.created.isoformat(),
            "removed": self.removed.isoformat() if self.removed else None,
        }


def check_url(url: str) -> str:
    """The node's base URL, normalised (no trailing slash); 400 unless http(s)://host[:port]."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        valid = False
    if not valid:
        raise InvalidRequestError(
            f"A node URL must be http(s)://HOST[:PORT][/PATH], not '{url}'.", param="url"
        )
    if parts.query or parts.fragment:
        raise InvalidRequestError("A node URL takes no query or fragment.", param="url")
    return text


def add_node(
    engine: Engine,
    member: str,
    name: str | None,
    url: str,
    *,
    slots: int = 4,
    api_key: str | None = None,
) -> Node:
    """Register the node at `url` for the active member `member` (committed on return)."""
    with db.write(engine) as conn:
        return add_node_in(conn, member, name, url, slots=slots, api_key=api_key)


def add_node_in(
    conn: Connection,
    member: str,
    name: str | None,
    url: str,
    *,
    slots: int = 4,
    api_key: str | None = None,
) -> Node:
    """`add_node` within the caller's write transaction."""
    url = check_url(url)
    if not 1 <= slots <= MAX_SLOTS:
        raise InvalidRequestError(f"slots must be 1..{MAX_SLOTS}.", param="slots")
    name = name or (urlsplit(url).netloc or url)
    created = db.now()
    owner = get_member(conn, member)
    node_id = conn.execute(
        sa.insert(db.nodes)
        .values(
            member_id=owner.id,
            name=name,
            url=url,
            created=created,
            slots=slots,
            api_key=api_key,
        )
        .returning(db.nodes.c.id)
    ).scalar_one()
    return Node(node_id, owner.name, name, url, created, None, slots, api_key, owner.id)


def list_nodes(engine: Engine, member: str | None = None) -> list[Node]:
    """Active nodes (oldest first), optionally of one member."""
    n, m = db.nodes, db.members
    query = (
        sa.select(
            n.c.id,
            m.c.name.label("member"),
            n.c.name,
            n.c.url,
            n.c.created,
            n.c.removed,
            n.c.slots,
            n.c.api_key,
            n.c.member_id,
        )
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
                cast(int, r.slots),
                cast("str | None", r.api_key),
                cast(int, r.member_id),
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


__all__ = ["Node", "add_node", "add_node_in", "check_url", "list_nodes", "remove_node"]
