"""Prepared statements write exactly what SQLAlchemy's own execution path writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from allmende.commons import db, members
from allmende.commons.prepared import Prepared, RowsInsert

INSERT = Prepared(sa.insert(db.ledger))
BY_MEMBER = Prepared(
    sa.select(db.ledger.c.request_id, db.ledger.c.status)
    .where(db.ledger.c.member_id == sa.bindparam("member"))
    .order_by(db.ledger.c.request_id)
)


def row(member_id: int, request_id: str, ts: datetime) -> dict[str, object]:
    return {
        "request_id": request_id,
        "ts": ts,
        "member_id": member_id,
        "key_id": None,
        "model": "m",
        "node_id": None,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "latency_ms": 5,
        "status": 200,
    }


@pytest.mark.parametrize("microsecond", [123456, 0])
def test_rows_read_back_like_core_rows(engine: Engine, microsecond: int) -> None:
    member = members.add_member(engine, "acme").id
    ts = datetime(2026, 11, 25, 17, 30, 1, microsecond, tzinfo=UTC)
    with db.write(engine) as conn:
        INSERT.execute_many(conn, [row(member, "req-a", ts)])
        conn.execute(sa.insert(db.ledger), row(member, "req-b", ts))
    with db.read(engine) as conn:
        stored = conn.execute(sa.select(db.ledger).order_by(db.ledger.c.request_id)).all()
        raw = conn.execute(sa.text("SELECT request_id, ts FROM ledger ORDER BY request_id")).all()
        assert BY_MEMBER.execute(conn, {"member": member}) == [("req-a", 200), ("req-b", 200)]
        assert BY_MEMBER.execute(conn, {"member": member + 1}) == []
    a, b = (r._asdict() for r in stored)
    assert a.pop("request_id") == "req-a" and b.pop("request_id") == "req-b"
    assert a == b and a["ts"] == ts  # the UTC type's bind processing ran
    assert raw[0][1] == raw[1][1]  # and stored the same text/timestamp as Core does
    with db.read(engine) as conn:  # so time ranges find both
        since = sa.select(sa.func.count()).where(db.ledger.c.ts >= ts)
        assert conn.execute(since).scalar() == 2


def test_errors_come_as_sqlalchemy_errors_and_roll_back(engine: Engine) -> None:
    member = members.add_member(engine, "acme").id
    ts = db.now()
    with pytest.raises(IntegrityError), db.write(engine) as conn:
        INSERT.execute_many(conn, [row(member, "req-a", ts), row(member, "req-a", ts)])
    with db.read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.ledger)).scalar() == 0


def test_missing_parameters_and_no_transaction_are_refused(engine: Engine) -> None:
    with db.write(engine) as conn, pytest.raises(KeyError, match="member"):
        BY_MEMBER.execute(conn)
    with engine.connect() as conn, pytest.raises(RuntimeError, match="transaction"):
        BY_MEMBER.execute(conn, {"member": 1})


@pytest.mark.parametrize("count", [1, 2, 7, 64, 100])
def test_rows_insert_writes_every_row_in_few_statements(engine: Engine, count: int) -> None:
    member = members.add_member(engine, "acme").id
    ts = datetime(2026, 11, 25, 17, 30, 1, 5, tzinfo=UTC)
    rows = [row(member, f"req-{i:03d}", ts) | {"status": 200 + i} for i in range(count)]
    insert = RowsInsert(db.ledger)
    with db.write(engine) as conn:
        insert.execute(conn, rows)
        insert.execute(conn, [])
    with db.read(engine) as conn:
        stored = conn.execute(sa.select(db.ledger).order_by(db.ledger.c.request_id)).all()
    assert [(r.request_id, r.status, r.ts) for r in stored] == [
        (f"req-{i:03d}", 200 + i, ts) for i in range(count)
    ]
    # one statement per binary digit of the count, at most MAX_ROWS rows each
    sizes = sorted(size for _, _, size in insert._statements)
    full, rest = divmod(count, RowsInsert.MAX_ROWS)
    expected = {RowsInsert.MAX_ROWS} if full else set()
    expected |= {1 << bit for bit in range(rest.bit_length()) if rest >> bit & 1}
    assert set(sizes) == expected
