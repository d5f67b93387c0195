"""The hash-chained audit log: concurrency, tamper detection, durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import allmende.commons.audit as audit_mod
from allmende.commons import db
from allmende.commons.audit import GENESIS, AuditLog, record_hash

APPENDER = Path(__file__).with_name("appender.py")


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("request", {"i": i, "model": "m"}, member_id=i % 3 + 1, key_id=i % 2 + 1)


def test_chain_format(engine: Engine) -> None:
    log = AuditLog(engine)
    first = log.append("key.create", {"prefix": "alm-x"}, member_id=1)
    second = log.append("request", {"model": "m"}, member_id=1, key_id=7)
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert second.prev_hash == first.hash
    assert second.hash == record_hash(
        first.hash,
        seq=2,
        ts=second.ts,
        kind="request",
        member_id=1,
        key_id=7,
        data={"model": "m"},
    )
    assert log.head() == (2, second.hash)
    assert log.records() == [first, second]
    assert log.records(after_seq=1) == [second]
    result = log.verify()
    assert (result.ok, result.checked, result.head_seq) == (True, 2, 2)


def test_empty_log_verifies(engine: Engine) -> None:
    result = AuditLog(engine).verify()
    assert result.ok and result.checked == 0


def test_content_only_when_enabled(engine: Engine) -> None:
    content = {"prompt": "secret prompt", "answer": "secret answer"}
    plain = AuditLog(engine).append("request", {"model": "m"}, content=content)
    assert "content" not in plain.data
    full = AuditLog(engine, record_content=True).append("request", {"model": "m"}, content=content)
    assert full.data["content"] == content
    with engine.connect() as conn:
        texts = conn.execute(sa.select(db.audit.c.data).order_by(db.audit.c.seq)).scalars().all()
    assert "secret" not in texts[0] and "secret prompt" in texts[1]
    assert AuditLog(engine).verify().ok


def test_records_of_one_member(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 9)
    assert {r.member_id for r in log.records(member_id=2)} == {2}
    assert len(log.records(member_id=2)) == 3


def test_concurrent_threads_never_fork_the_chain(engine: Engine) -> None:
    log = AuditLog(engine)
    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(lambda i: log.append("t", {"i": i}).seq, range(100)))
    assert sorted(seqs) == list(range(1, 101))
    result = log.verify()
    assert result.ok and result.checked == 100


def test_concurrent_processes_never_fork_the_chain(engine: Engine, db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, str(APPENDER), db_url, "25", f"w{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    seqs: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        seqs.extend(int(line) for line in out.split())
    assert sorted(seqs) == list(range(1, 101))
    result = AuditLog(engine).verify()
    assert result.ok and result.checked == 100


def test_altered_record_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 100)
    with db.write(engine) as conn:
        conn.execute(sa.update(db.audit).where(db.audit.c.seq == 50).values(data='{"i":999}'))
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 50, 49)
    assert result.reason is not None and "altered" in result.reason


def test_altered_metadata_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 20)
    with db.write(engine) as conn:
        conn.execute(sa.update(db.audit).where(db.audit.c.seq == 7).values(member_id=99))
    assert log.verify().first_bad_seq == 7


def test_rehashed_record_breaks_the_next_link(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 20)
    (rec,) = log.records(after_seq=9, limit=1)
    forged = record_hash(
        rec.prev_hash,
        seq=10,
        ts=rec.ts,
        kind=rec.kind,
        member_id=rec.member_id,
        key_id=rec.key_id,
        data={"i": -1},
    )
    with db.write(engine) as conn:
        conn.execute(
            sa.update(db.audit).where(db.audit.c.seq == 10).values(data='{"i":-1}', hash=forged)
        )
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 11)


def test_deleted_record_is_named(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 100)
    with db.write(engine) as conn:
        conn.execute(sa.delete(db.audit).where(db.audit.c.seq == 42))
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 42)
    assert result.reason is not None and "missing" in result.reason


def test_deleted_tail_is_detected(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 30)
    with db.write(engine) as conn:
        conn.execute(sa.delete(db.audit).where(db.audit.c.seq > 27))
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 28)


def test_swapped_records_are_detected(engine: Engine) -> None:
    log = AuditLog(engine)
    fill(log, 100)
    a = db.audit
    with db.write(engine) as conn:
        conn.execute(sa.update(a).where(a.c.seq == 60).values(seq=-1))
        conn.execute(sa.update(a).where(a.c.seq == 61).values(seq=60))
        conn.execute(sa.update(a).where(a.c.seq == -1).values(seq=61))
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 60)
    assert result.reason is not None and "does not follow" in result.reason


def test_verify_pages_through_long_chains(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "PAGE", 7)
    log = AuditLog(engine)
    fill(log, 25)
    assert log.verify().checked == 25
    with db.write(engine) as conn:
        conn.execute(sa.delete(db.audit).where(db.audit.c.seq == 15))
    assert log.verify().first_bad_seq == 15


def test_sigkill_loses_no_acknowledged_record(engine: Engine, db_url: str) -> None:
    """Writers killed with SIGKILL mid-way: every seq they printed after commit is there."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(APPENDER), db_url, "100000", f"w{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    acknowledged: list[int] = []
    assert procs[0].stdout is not None
    for _ in range(60):  # wait until the first writer has acknowledged 60 records
        acknowledged.append(int(procs[0].stdout.readline()))
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        acknowledged.extend(int(line) for line in out.split())
    log = AuditLog(engine)
    with engine.connect() as conn:
        stored = set(conn.execute(sa.select(db.audit.c.seq)).scalars())
    assert set(acknowledged) <= stored
    result = log.verify()
    assert result.ok, result
    assert result.checked == len(stored) >= len(acknowledged)
    # The chain goes on where the killed writers left it.
    assert log.append("after", {}).seq == len(stored) + 1
    assert log.verify().ok
