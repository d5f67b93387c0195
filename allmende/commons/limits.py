"""Per-key rate limits (requests per minute, tokens per minute, tokens per day), kept in the
database so that every gateway replica counts against the same totals.

Windows are fixed and aligned to the epoch: a minute window starts at a whole UTC minute, a day
window at 00:00 UTC. `admit` runs before a request: one upsert counts the request in its windows
and returns the totals; the request is refused (429, Retry-After = seconds until the window that
is full ends) when the minute already holds `rpm` requests, or the tokens charged so far reach
`tpm` or `tpd`. A refused request is not counted (a second statement takes it back). `charge`
runs after the request with the tokens it used (prompt + completion). Token limits are checked
before a request whose size is not yet known, so one request may overshoot; the next one waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ..errors import RateLimitError
from . import db
from .keys import Limits, Principal

SPANS = {"minute": 60, "day": 86_400}


@dataclass(frozen=True)
class WindowState:
    span: str
    start: int
    requests: int
    tokens: int

    def retry_after(self, at: float) -> float:
        return self.start + SPANS[self.span] - at


def _spans(limits: Limits) -> list[str]:
    spans = []
    if limits.rpm is not None or limits.tpm is not None:
        spans.append("minute")
    if limits.tpd is not None:
        spans.append("day")
    return spans


def _upsert(
    conn: Connection, key_id: int, spans: list[str], at: float, requests: int, tokens: int
) -> list[WindowState]:
    """Add to the key's current windows in one statement, starting a new window where the stored
    one has ended; returns the totals after the change."""
    table = db.rate_counters
    insert: Any = postgresql.insert if db.is_postgresql(conn) else sqlite.insert
    rows = [
        {
            "key_id": key_id,
            "span": span,
            "window_start": int(at // SPANS[span]) * SPANS[span],
            "requests": requests,
            "tokens": tokens,
        }
        for span in spans
    ]
    stmt = insert(table).values(rows)
    newer = stmt.excluded.window_start > table.c.window_start
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key_id, table.c.span],
        set_={
            "window_start": sa.case(
                (newer, stmt.excluded.window_start), else_=table.c.window_start
            ),
            "requests": sa.case(
                (newer, stmt.excluded.requests), else_=table.c.requests + stmt.excluded.requests
            ),
            "tokens": sa.case(
                (newer, stmt.excluded.tokens), else_=table.c.tokens + stmt.excluded.tokens
            ),
        },
    ).returning(table.c.span, table.c.window_start, table.c.requests, table.c.tokens)
    return [WindowState(r.span, r.window_start, r.requests, r.tokens) for r in conn.execute(stmt)]


def _violations(limits: Limits, states: list[WindowState]) -> list[tuple[str, WindowState]]:
    found = []
    for state in states:
        if state.span == "minute":
            if limits.rpm is not None and state.requests > limits.rpm:
                found.append(("requests per minute", state))
            if limits.tpm is not None and state.tokens >= limits.tpm:
                found.append(("tokens per minute", state))
        elif limits.tpd is not None and state.tokens >= limits.tpd:
            found.append(("tokens per day", state))
    return found


def admit(
    engine: Engine, key_id: int, limits: Limits, *, at: datetime | None = None
) -> list[WindowState]:
    """Count a request against the key's limits, or raise `RateLimitError` (429)."""
    spans = _spans(limits)
    if not spans:
        return []
    t = (at or db.now()).timestamp()
    with db.write(engine) as conn:
        states = _upsert(conn, key_id, spans, t, 1, 0)
        violations = _violations(limits, states)
        if violations:
            _take_back(conn, key_id, states)
    if not violations:
        return states
    retry = max(state.retry_after(t) for _, state in violations)
    names = ", ".join(sorted({name for name, _ in violations}))
    raise RateLimitError(
        f"Rate limit reached for this API key ({names}); try again in {math.ceil(retry)} s.",
        retry_after=max(1, math.ceil(retry)),
    )


def _take_back(conn: Connection, key_id: int, states: list[WindowState]) -> None:
    table = db.rate_counters
    for state in states:
        conn.execute(
            sa.update(table)
            .where(
                table.c.key_id == key_id,
                table.c.span == state.span,
                table.c.window_start == state.start,
            )
            .values(requests=table.c.requests - 1)
        )


def charge(
    engine: Engine, key_id: int, limits: Limits, tokens: int, *, at: datetime | None = None
) -> list[WindowState]:
    """Add the tokens a finished request used to the key's current windows."""
    spans = [span for span in _spans(limits) if span == "day" or limits.tpm is not None]
    if not spans or tokens <= 0:
        return []
    with db.write(engine) as conn:
        return _upsert(conn, key_id, spans, (at or db.now()).timestamp(), 0, tokens)


def admit_principal(engine: Engine, principal: Principal, *, at: datetime | None = None) -> None:
    admit(engine, principal.key_id, principal.limits, at=at)


def charge_principal(
    engine: Engine, principal: Principal, tokens: int, *, at: datetime | None = None
) -> None:
    charge(engine, principal.key_id, principal.limits, tokens, at=at)


__all__ = ["SPANS", "WindowState", "admit", "admit_principal", "charge", "charge_principal"]
