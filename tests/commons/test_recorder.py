"""The gateway's fast path: group commit (`Recorder`), in-memory admission (`Limiter`) and the
key cache (`KeyCache`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from allmende.commons import db, keys, ledger, limits, members
from allmende.commons.audit import AuditLog, Entry
from allmende.commons.recorder import FLUSH_DELAY, Recorder
from allmende.errors import AuthenticationError, RateLimitError

T0 = datetime(2025, 3, 1, 12, 0, 15, tzinfo=UTC).timestamp()  # 15 s into a minute


def principal(engine: Engine, lim: keys.Limits | None = None) -> keys.Principal:
    members.add_member(engine, "acme")
    new = keys.create_key(engine, "acme", limits=lim or keys.Limits())
    return keys.authenticate(engine, new.secret)


def work(p: keys.Principal, i: int, tag: str = "r") -> tuple[ledger.LedgerEntry, Entry]:
    rid = f"{tag}-{i}"
    entry = ledger.LedgerEntry(
        member_id=p.member_id,
        key_id=p.key_id,
        model="m",
        prompt_tokens=3,
        completion_tokens=4,
        latency_ms=1,
        status=200,
        request_id=rid,
    )
    return entry, Entry("request", {"request_id": rid}, p.member_id, p.key_id)


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


async def test_many_requests_share_few_commits(engine: Engine) -> None:
    p = principal(engine)
    audit = AuditLog(engine)
    recorder = Recorder(engine, audit)
    try:
        await asyncio.gather(*(recorder.record(*work(p, i)) for i in range(200)))
        # Each `record` returned after its commit: everything is there already.
        assert count(engine, db.ledger) == 200
        assert recorder.recorded == 200 and recorder.batches < 200
    finally:
        recorder.close()
    result = audit.verify()
    assert result.ok and result.checked == 200
    assert [r.data["request_id"] for r in audit.records(limit=1000)] == [
        f"r-{i}" for i in range(200)
    ]


async def test_one_bad_record_fails_only_its_request(engine: Engine) -> None:
    p = principal(engine)
    recorder = Recorder(engine, AuditLog(engine))
    try:
        await recorder.record(*work(p, 0))
        results = await asyncio.gather(
            *(recorder.record(*work(p, i)) for i in range(5)), return_exceptions=True
        )
        assert isinstance(results[0], sa.exc.IntegrityError)  # request id r-0 again
        assert results[1:] == [None] * 4
    finally:
        recorder.close()
    assert count(engine, db.ledger) == 5
    assert AuditLog(engine).verify().ok


def test_recorders_in_several_threads_and_loops_keep_one_chain(engine: Engine) -> None:
    """Two gateways (each its own recorder, engine and event loop) on one database."""
    p = principal(engine)

    def gateway(tag: str) -> None:
        other = db.create_db_engine(engine.url.render_as_string(hide_password=False))
        recorder = Recorder(other, AuditLog(other))

        async def run() -> None:
            await asyncio.gather(*(recorder.record(*work(p, i, tag)) for i in range(60)))

        try:
            asyncio.run(run())
        finally:
            recorder.close()
            other.dispose()

    threads = [threading.Thread(target=gateway, args=(f"g{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count(engine, db.ledger) == 180
    result = AuditLog(engine).verify()
    assert result.ok and result.checked == 180


async def test_counts_reach_the_database_with_the_records(engine: Engine) -> None:
    p = principal(engine, keys.Limits(rpm=1000, tpm=10**6))
    limiter = limits.Limiter()
    recorder = Recorder(engine, AuditLog(engine), limiter)
    try:
        limiter.merge(p.key_id, limits.admit_principal(engine, p))  # the first: the database
        for _ in range(9):
            assert limiter.admit(p)
        limiter.charge(p, 70)
        await recorder.record(*work(p, 0))
        with engine.connect() as conn:
            row = conn.execute(sa.select(db.rate_counters)).one()
        assert (row.requests, row.tokens) == (10, 70)
        # Counts alone (no record) go out within FLUSH_DELAY.
        assert limiter.admit(p)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(sa.select(db.rate_counters.c.requests)).scalar() == 11:
                    break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the pending count was not written")
    finally:
        recorder.close()


async def test_counts_that_a_request_takes_along_cost_no_commit_of_their_own(
    engine: Engine,
) -> None:
    p = principal(engine, keys.Limits(rpm=1000))
    limiter = limits.Limiter()
    recorder = Recorder(engine, AuditLog(engine), limiter)
    try:
        limiter.merge(p.key_id, limits.admit_principal(engine, p))
        for i in range(5):  # steady traffic: each request's counts go out with its record
            assert limiter.admit(p)
            await recorder.record(*work(p, i))
            await asyncio.sleep(0.01)
        await asyncio.sleep(2 * FLUSH_DELAY)  # every timer has fired by now
        assert recorder.batches == 5
        # Counts waiting since before a timer was set are flushed by it; newer ones are not.
        limiter.on_pending = None  # this time the test fires the timers by hand
        assert limiter.admit(p)
        since = limiter.pending_since()
        assert since is not None
        recorder._flush_if_waiting(since - 1.0)
        await asyncio.sleep(0.1)
        assert recorder.batches == 5
        recorder._flush_if_waiting(since)
        deadline = time.monotonic() + 5
        while recorder.batches == 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert recorder.batches == 6 and limiter.pending_since() is None
    finally:
        recorder.close()


def test_limiter_admits_exactly_like_the_database(engine: Engine) -> None:
    p = principal(engine, keys.Limits(rpm=3, tpm=100))
    limiter = limits.Limiter()
    assert not limiter.admit(p, at=T0)  # no view yet: ask the database
    at = datetime.fromtimestamp(T0, UTC)
    limiter.merge(p.key_id, limits.admit_principal(engine, p, at=at))
    assert limiter.admit(p, at=T0 + 1) and limiter.admit(p, at=T0 + 2)
    with pytest.raises(RateLimitError) as exc:
        limiter.admit(p, at=T0 + 5)
    assert exc.value.retry_after == 40 and "requests per minute" in exc.value.message
    # Tokens: the last admitted request may overshoot, the next one waits.
    limiter.charge(p, 120, at=T0 + 6)
    with pytest.raises(RateLimitError) as exc:
        limiter.admit(p, at=T0 + 6)
    assert "tokens per minute" in exc.value.message
    # A new minute: the database decides again.
    assert not limiter.admit(p, at=T0 + 60)
    pending = limiter.take_pending()
    minute = int(T0 // 60) * 60
    assert sorted(pending) == [(p.key_id, "minute", minute, 2, 120)]
    with db.write(engine) as conn:
        totals = limits.add_in(conn, pending)
    (state,) = totals[p.key_id]
    assert (state.start, state.requests, state.tokens) == (minute, 3, 120)


def test_limiter_learns_what_other_replicas_counted(engine: Engine) -> None:
    p = principal(engine, keys.Limits(rpm=5))
    mine, theirs = limits.Limiter(), limits.Limiter()
    at = datetime.fromtimestamp(T0, UTC)
    mine.merge(p.key_id, limits.admit_principal(engine, p, at=at))  # 1
    theirs.merge(p.key_id, limits.admit_principal(engine, p, at=at))  # 2
    assert theirs.admit(p, at=T0) and theirs.admit(p, at=T0)  # 4, not yet written
    assert mine.admit(p, at=T0)  # mine still sees 1 + 1
    with db.write(engine) as conn:
        written = limits.add_in(conn, theirs.take_pending())
    with db.write(engine) as conn:
        totals = limits.add_in(conn, mine.take_pending())
    assert written[p.key_id][0].requests == 4 and totals[p.key_id][0].requests == 5
    mine.merge(p.key_id, totals[p.key_id])
    with pytest.raises(RateLimitError):
        mine.admit(p, at=T0 + 1)


def test_one_batch_with_two_windows_and_several_keys(engine: Engine) -> None:
    """Counts of an ended and a new window of the same key, and of other keys, written in one
    `add_in`, as one by one in (key, span, window) order: the ended window's counts first, then
    the new window replaces it."""
    p = principal(engine, keys.Limits(rpm=100, tpd=10_000))
    members.add_member(engine, "other")
    q = keys.authenticate(
        engine, keys.create_key(engine, "other", limits=keys.Limits(rpm=9)).secret
    )
    minute = int(T0 // 60) * 60
    day = int(T0 // 86_400) * 86_400
    deltas: list[limits.Delta] = [
        (p.key_id, "minute", minute + 60, 1, 5),  # the new minute
        (p.key_id, "minute", minute, 2, 7),  # the ended one, counted late
        (p.key_id, "day", day, 3, 12),
        (q.key_id, "minute", minute, 4, 0),
    ]
    with db.write(engine) as conn:
        totals = limits.add_in(conn, deltas)
    by_span = {s.span: (s.start, s.requests, s.tokens) for s in totals[p.key_id]}
    assert by_span == {"minute": (minute + 60, 1, 5), "day": (day, 3, 12)}
    assert [(s.span, s.requests) for s in totals[q.key_id]] == [("minute", 4)]
    with db.read(engine) as conn:
        c = db.rate_counters.c
        stored = conn.execute(sa.select(c.key_id, c.span, c.window_start, c.requests)).all()
    assert sorted(stored) == sorted(
        [
            (p.key_id, "minute", minute + 60, 1),
            (p.key_id, "day", day, 3),
            (q.key_id, "minute", minute, 4),
        ]
    )


def test_key_cache(engine: Engine) -> None:
    members.add_member(engine, "acme")
    secret = keys.create_key(engine, "acme", limits=keys.Limits(rpm=5)).secret
    soon = keys.create_key(engine, "acme", expires=db.now() + timedelta(seconds=1)).secret
    cache = keys.KeyCache(engine, ttl=60)
    try:
        assert cache.lookup(secret) is None
        p = cache.authenticate(secret)
        assert cache.lookup(secret) == p
        # A change through this engine holds at once: limits, revocation.
        keys.set_limits(engine, p.key_id, keys.Limits(rpm=1))
        assert cache.lookup(secret) is None
        assert cache.authenticate(secret).limits == keys.Limits(rpm=1)
        keys.revoke_key(engine, p.key_id)
        assert cache.lookup(secret) is None
        with pytest.raises(AuthenticationError, match="revoked"):
            cache.authenticate(secret)
        # A cached key stops working when it expires.
        assert cache.authenticate(soon).key_id
        time.sleep(1.05)
        with pytest.raises(AuthenticationError, match="expired"):
            cache.lookup(soon)
    finally:
        cache.close()


def test_key_cache_forgets_changes_made_elsewhere_within_its_ttl(engine: Engine) -> None:
    members.add_member(engine, "acme")
    secret = keys.create_key(engine, "acme").secret
    # A ttl long enough that the revocation below (a durable commit) fits in it on a busy machine.
    cache = keys.KeyCache(engine, ttl=1.5)
    elsewhere = db.create_db_engine(engine.url.render_as_string(hide_password=False))
    try:
        p = cache.authenticate(secret)
        keys.revoke_key(elsewhere, p.key_id)  # another process or replica
        assert cache.lookup(secret) == p  # still trusted, for at most the ttl
        time.sleep(1.55)
        with pytest.raises(AuthenticationError, match="revoked"):
            cache.authenticate(secret)
    finally:
        cache.close()
        elsewhere.dispose()
