"""Per-key rate limits (requests per minute, tokens per minute, tokens per day), kept in the
database so that every gateway replica counts against the same totals.

Windows are fixed and aligned to the epoch: a minute window starts at a whole UTC minute, a day
window at 00:00 UTC. `admit` runs before a request: one upsert counts the request in its windows
and returns the totals; the request is refused (429, Retry-After = seconds until the window that
is full ends) when the minute already holds `rpm` requests, or the tokens charged so far reach
`tpm` or `tpd`. A refused request is not counted (a second statement takes it back). `charge`
runs after the request with the tokens it used (prompt + completion). Token limits are checked
before a request whose size is not yet known, so one request may overshoot; the next one waits.

The gateway admits from memory instead (`Limiter`): the same rules applied to its view of these
counters, which its group-commit writer keeps in step with the database (`add_in`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import RateLimitError
from . import db
from .keys import Limits, Principal
from .prepared import RowsInsert

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


def _add_to_window(stmt: Any) -> Any:
    """Finish a multi-row insert of counts as the upsert that adds them to a key's window."""
    table = db.rate_counters
    newer = stmt.excluded.window_start > table.c.window_start
    return stmt.on_conflict_do_update(
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
    ).returning(
        table.c.key_id, table.c.span, table.c.window_start, table.c.requests, table.c.tokens
    )


_UPSERT = RowsInsert(db.rate_counters, upsert=_add_to_window)


def _upsert_rows(
    conn: Connection, rows: list[dict[str, Any]]
) -> dict[tuple[int, str], WindowState]:
    """Add each row's counts to its key's window (starting a new window where the stored one
    has ended), all rows in one statement, except that rows for a (key, span) already in it go
    to a next one, in their order (PostgreSQL refuses to change a row twice in one statement);
    the totals after the change, by (key, span)."""
    states: dict[tuple[int, str], WindowState] = {}
    while rows:
        layer: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        seen: set[tuple[int, str]] = set()
        for row in rows:
            target = (row["key_id"], row["span"])
            (later if target in seen else layer).append(row)
            seen.add(target)
        for key_id, span, start, requests, tokens in _UPSERT.execute(conn, layer):
            states[(int(key_id), span)] = WindowState(span, int(start), int(requests), int(tokens))
        rows = later
    return states


def _upsert(
    conn: Connection, key_id: int, spans: list[str], at: float, requests: int, tokens: int
) -> list[WindowState]:
    """Add to the key's current windows, starting a new window where the stored one has
    ended; returns the totals after the change."""
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
    states = _upsert_rows(conn, rows)
    return [states[(key_id, span)] for span in spans]


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
    raise _refusal(violations, t)


def _refusal(violations: list[tuple[str, WindowState]], at: float) -> RateLimitError:
    retry = max(state.retry_after(at) for _, state in violations)
    names = ", ".join(sorted({name for name, _ in violations}))
    return RateLimitError(
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


def admit_principal(
    engine: Engine, principal: Principal, *, at: datetime | None = None
) -> list[WindowState]:
    return admit(engine, principal.key_id, principal.limits, at=at)


def charge_principal(
    engine: Engine, principal: Principal, tokens: int, *, at: datetime | None = None
) -> None:
    charge(engine, principal.key_id, principal.limits, tokens, at=at)


# ---- admission in memory (the gateway) ----------------------------------------------------

Delta = tuple[int, str, int, int, int]  # key_id, span, window_start, requests, tokens


def add_in(conn: Connection, deltas: list[Delta]) -> dict[int, list[WindowState]]:
    """Add counts to the keys' windows within the caller's write transaction, as `admit` and
    `charge` do (a newer window replaces an ended one; an older one adds to the newer), and
    return the totals after it, by key. Rows are changed in (key, span, window) order, so that
    concurrent writers lock them in the same order."""
    rows = [
        {"key_id": k, "span": span, "window_start": start, "requests": r, "tokens": t}
        for k, span, start, r, t in sorted(deltas)
    ]
    last = _upsert_rows(conn, rows)
    totals: dict[int, list[WindowState]] = {}
    for (key_id, _), state in last.items():
        totals.setdefault(key_id, []).append(state)
    return totals


class Limiter:
    """Admission from this process's view of the shared counters, in memory.

    `admit` decides from the view: the totals the database last returned for the key's current
    windows, plus what this process admitted and charged since. What it counts waits in
    `take_pending` for the gateway's writer, which adds it to the database with the next batch
    (`add_in`) and feeds the new totals back (`merge`). A key without a view of its current
    windows (its first request in this process, a new minute) is admitted by the database
    itself (`admit`), and the answer seeds the view.

    In one process this is exact. With several replicas, each one also counts what the others
    admitted, but only as of its last batch: a key can go over a limit by what the other
    replicas admitted since then (one commit, milliseconds, under load; when a replica is idle
    its counts go out within `recorder.FLUSH_DELAY`, 20 ms, and a new window always starts
    with a look at the database).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._views: dict[tuple[int, str], WindowState] = {}
        self._pending: dict[tuple[int, str, int], list[int]] = {}
        self._pending_since: float | None = None  # time.monotonic() when counts started waiting
        self.on_pending: Callable[[], None] | None = None  # called when counts start waiting

    def admit(self, principal: Principal, *, at: float | None = None) -> bool:
        """Count a request from the view: True if admitted, False if the view lacks a current
        window (admit through the database, then `merge`); `RateLimitError` (429) if refused."""
        spans = _spans(principal.limits)
        if not spans:
            return True
        t = time.time() if at is None else at
        key = principal.key_id
        with self._lock:
            states = []
            for span in spans:
                view = self._views.get((key, span))
                if view is None or view.start < int(t // SPANS[span]) * SPANS[span]:
                    return False
                states.append(WindowState(span, view.start, view.requests + 1, view.tokens))
            violations = _violations(principal.limits, states)
            if violations:
                raise _refusal(violations, t)
            for state in states:
                self._views[(key, state.span)] = state
                self._add(key, state.span, state.start, 1, 0)
        return True

    def charge(self, principal: Principal, tokens: int, *, at: float | None = None) -> None:
        """Add a finished request's tokens to the view and to what is pending."""
        limits = principal.limits
        spans = [span for span in _spans(limits) if span == "day" or limits.tpm is not None]
        if not spans or tokens <= 0:
            return
        t = time.time() if at is None else at
        key = principal.key_id
        with self._lock:
            for span in spans:
                start = int(t // SPANS[span]) * SPANS[span]
                view = self._views.get((key, span))
                if view is not None and view.start >= start:
                    start = view.start  # a newer window (another replica's clock): count there
                    self._views[(key, span)] = WindowState(
                        span, start, view.requests, view.tokens + tokens
                    )
                else:
                    self._views.pop((key, span), None)  # next admission asks the database
                self._add(key, span, start, 0, tokens)

    def _add(self, key: int, span: str, start: int, requests: int, tokens: int) -> None:
        was_empty = not self._pending
        if was_empty:
            self._pending_since = time.monotonic()
        counts = self._pending.setdefault((key, span, start), [0, 0])
        counts[0] += requests
        counts[1] += tokens
        if was_empty and self.on_pending is not None:
            self.on_pending()

    def pending_since(self) -> float | None:
        """When (`time.monotonic()`) the counts now waiting started to wait; None if none."""
        with self._lock:
            return self._pending_since if self._pending else None

    def take_pending(self) -> list[Delta]:
        """What was counted since the last call, for `add_in`."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._pending_since = None
        return [(k, span, start, r, t) for (k, span, start), (r, t) in pending.items()]

    def restore_pending(self, deltas: list[Delta]) -> None:
        """Put back what `take_pending` gave when it could not be written."""
        with self._lock:
            if not self._pending and deltas:
                self._pending_since = time.monotonic()
            for key, span, start, requests, tokens in deltas:
                counts = self._pending.setdefault((key, span, start), [0, 0])
                counts[0] += requests
                counts[1] += tokens

    def merge(self, key_id: int, states: list[WindowState]) -> None:
        """Take in the database's totals for a key (from `admit` or `add_in`): they and what
        is still pending make the view, unless the view is already further on."""
        with self._lock:
            for state in states:
                waiting = self._pending.get((key_id, state.span, state.start), [0, 0])
                fresh = WindowState(
                    state.span,
                    state.start,
                    state.requests + waiting[0],
                    state.tokens + waiting[1],
                )
                view = self._views.get((key_id, state.span))
                if view is None or view.start < fresh.start:
                    self._views[(key_id, state.span)] = fresh
                elif view.start == fresh.start:
                    self._views[(key_id, state.span)] = WindowState(
                        state.span,
                        state.start,
                        max(view.requests, fresh.requests),
                        max(view.tokens, fresh.tokens),
                    )


__all__ = [
    "SPANS",
    "Limiter",
    "WindowState",
    "add_in",
    "admit",
    "admit_principal",
    "charge",
    "charge_principal",
]
