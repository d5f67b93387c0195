"""Group commit for the gateway: ledger rows, limit counts and audit records of many requests in
one transaction.

One writer thread takes what finished requests leave (a ledger entry and an audit record each)
and what the `Limiter` counted since its last batch, and writes all of it in one write
transaction: the limit counters first, then the ledger rows, then the audit records (last, as
`AuditLog.append_in` asks, so the chain's head is locked only briefly on PostgreSQL). Each
request's `record` returns only after that transaction has committed, so a request is still
acknowledged only once it is durably recorded; the commit (and its fsync) is shared by every
request in the batch. While one batch commits the next one gathers, so batches grow with load
and no request waits for a timer.

If a batch fails, each of its requests is tried again in a transaction of its own, so one bad
record fails only its own request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from . import db, ledger, limits
from .audit import AuditLog, Entry
from .ledger import LedgerEntry

log = logging.getLogger("allmende.commons")

MAX_BATCH = 512  # requests per transaction at most
FLUSH_DELAY = 0.02  # seconds that limit counts alone wait for a request to take them along


@dataclass(frozen=True)
class _Work:
    entry: LedgerEntry
    audit: Entry
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


_FLUSH = object()  # wakes the writer for pending limit counts
_STOP = object()


class Recorder:
    """The writer thread; `record` from the event loop, `close` to drain and stop."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditLog,
        limiter: limits.Limiter | None = None,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.limiter = limiter
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="allmende-recorder", daemon=True)
        self._closed = False
        self._conn: Connection | None = None  # used by the writer thread only
        self.batches = 0  # transactions committed, and the requests in them (for tests/metrics)
        self.recorded = 0
        if limiter is not None:
            limiter.on_pending = self.flush
        self._thread.start()

    async def record(self, entry: LedgerEntry, audit: Entry) -> None:
        """Write a request's ledger entry and audit record; returns once they are committed."""
        if self._closed:
            raise RuntimeError("the recorder is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Work(entry, audit, loop, future))
        await future

    def flush(self) -> None:
        """Have the limiter's pending counts written within `FLUSH_DELAY` even if no request
        ends meanwhile. Called when counts start waiting: from an event loop, it only sets a
        timer there, since waking the writer at once (for each request's admission) would cost
        a thread switch that a request ending within the delay makes needless."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a loop: no timer to set; wake the writer now
            self._queue.put(_FLUSH)
            return
        loop.call_later(FLUSH_DELAY, self._flush_if_waiting, time.monotonic())

    def _flush_if_waiting(self, started: float) -> None:
        """Wake the writer if counts that were waiting at `started` still wait. Counts that
        started to wait later have a timer of their own: under steady traffic each request
        takes the counts along, and no commit is spent on counts alone."""
        if self._closed or self.limiter is None:
            return
        since = self.limiter.pending_since()
        if since is not None and since <= started:
            self._queue.put(_FLUSH)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (blocking)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # ---- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            work = [item for item in items if isinstance(item, _Work)]
            # After taking the work: a request charges its tokens before it queues its record,
            # so its charge goes out in this batch or an earlier one.
            deltas = self.limiter.take_pending() if self.limiter is not None else []
            if work or deltas:
                try:
                    self._write(work, deltas)
                except Exception:  # never let the writer die; each request hears of it
                    log.exception("recording a batch of %d requests failed", len(work))
        self._drop_connection()

    def _connection(self) -> Connection:
        """The writer's own connection, kept between batches (no pool round trip each time)."""
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(allmende_write=True)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # a broken connection: nothing more to do with it
                log.debug("closing the recorder's connection failed", exc_info=True)

    def _write(self, work: Sequence[_Work], deltas: list[limits.Delta]) -> None:
        try:
            conn = self._connection()
            with db.write_lock(self.engine), conn.begin():  # BEGIN IMMEDIATE on SQLite
                totals = limits.add_in(conn, deltas)
                ledger.record_in(conn, [w.entry for w in work])
                self.audit.append_in(conn, [w.audit for w in work])
        except Exception as exc:
            self._drop_connection()
            if len(work) <= 1 and not deltas:
                _settle(work, [exc] * len(work))
                return
            log.warning(
                "a batch of %d records failed (%s); writing them one by one", len(work), exc
            )
            self._write_each(work, deltas)
            return
        self.batches += 1
        self.recorded += len(work)
        if self.limiter is not None:
            for key_id, states in totals.items():
                self.limiter.merge(key_id, states)
        _settle(work, [None] * len(work))

    def _write_each(self, work: Sequence[_Work], deltas: list[limits.Delta]) -> None:
        if deltas:
            try:
                with db.write(self.engine) as conn:
                    totals = limits.add_in(conn, deltas)
            except Exception:
                log.exception("writing the limit counters failed; they are kept for the next batch")
                if self.limiter is not None:
                    self.limiter.restore_pending(deltas)
            else:
                if self.limiter is not None:
                    for key_id, states in totals.items():
                        self.limiter.merge(key_id, states)
        outcomes: list[BaseException | None] = []
        for w in work:
            try:
                with db.write(self.engine) as conn:
                    ledger.record_in(conn, [w.entry])
                    self.audit.append_in(conn, [w.audit])
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
                self.recorded += 1
        _settle(work, outcomes)


def _settle(work: Sequence[_Work], outcomes: Sequence[BaseException | None]) -> None:
    """Resolve each request's future in its own event loop: one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
    for w, outcome in zip(work, outcomes, strict=True):
        by_loop.setdefault(w.loop, []).append((w.future, outcome))
    for loop, done in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, done)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _resolve(done: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, outcome in done:
        if future.done():  # the request was cancelled meanwhile; its record stands
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


__all__ = ["FLUSH_DELAY", "MAX_BATCH", "Recorder"]
