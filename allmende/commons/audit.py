"""The audit log: append-only and hash-chained.

Record ``seq`` (1, 2, 3, ...) carries ``prev_hash``, the hash of record ``seq - 1`` (64 zeros for
the first), and ``hash = sha256(prev_hash + canonical_json(fields))`` in lower-case hex, where the
fields are ``seq, ts, kind, member_id, key_id, data`` and canonical JSON has sorted keys, no
spaces and UTF-8 text. The row ``audit_head`` holds the newest seq and hash; `append` locks it
(PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite: the ``BEGIN IMMEDIATE`` write lock), so
concurrent writers in any process or replica never fork the chain, and commits before returning.
`append_in` appends several records in the caller's transaction (the gateway's group commit).

`verify` walks the chain in seq order and names the first record that is missing (a gap, or a
tail missing against the head), out of place (its ``prev_hash`` is not its predecessor's hash:
reordered or inserted) or altered (its hash does not match its fields).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db
from .prepared import Prepared, RowsInsert

GENESIS = "0" * 64
PAGE = 1000


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: datetime,
    kind: str,
    member_id: int | None,
    key_id: int | None,
    data: Any,
) -> str:
    fields = {
        "seq": seq,
        "ts": format_ts(ts),
        "kind": kind,
        "member_id": member_id,
        "key_id": key_id,
        "data": data,
    }
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: datetime
    prev_hash: str
    hash: str
    kind: str
    member_id: int | None
    key_id: int | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": format_ts(self.ts),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "kind": self.kind,
            "member_id": self.member_id,
            "key_id": self.key_id,
            "data": self.data,
        }


@dataclass(frozen=True)
class Entry:
    """A record to append: what `AuditLog.append` takes, for `AuditLog.append_in`."""

    kind: str
    data: dict[str, Any] | None = None
    member_id: int | None = None
    key_id: int | None = None
    content: dict[str, Any] | None = None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int = 0
    head_hash: str = GENESIS


# The statements of an append, compiled once per dialect (the gateway writes them per request).
_HEAD_SELECT = sa.select(db.audit_head.c.seq, db.audit_head.c.hash).where(db.audit_head.c.id == 1)
_HEAD = Prepared(_HEAD_SELECT)
_HEAD_FOR_UPDATE = Prepared(_HEAD_SELECT.with_for_update())
_INSERT = RowsInsert(db.audit)
_MOVE_HEAD = Prepared(
    sa.update(db.audit_head)
    .where(db.audit_head.c.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)


class AuditLog:
    """Appends to and reads the audit chain. Prompt and answer content is kept only when
    `record_content` is on (the operator's setting); otherwise only metadata is stored."""

    def __init__(self, engine: Engine, *, record_content: bool = False) -> None:
        self.engine = engine
        self.record_content = record_content

    def append(
        self,
        kind: str,
        data: dict[str, Any] | None = None,
        *,
        member_id: int | None = None,
        key_id: int | None = None,
        content: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record; it is committed (durable) when this returns."""
        with db.write(self.engine) as conn:
            return self.append_in(conn, [Entry(kind, data, member_id, key_id, content)])[0]

    def append_in(self, conn: Connection, entries: Sequence[Entry]) -> list[AuditRecord]:
        """Append `entries` in this order within the caller's write transaction (committed
        when it commits). Call it last in the transaction: on PostgreSQL it locks the chain's
        head row until the commit, and other appenders wait for it."""
        prepared = []
        for e in entries:
            payload = dict(e.data or {})
            if e.content is not None and self.record_content:
                payload["content"] = e.content
            text = canonical_json(payload)
            prepared.append((e, text, json.loads(text)))  # exactly what verify will read back
        if not prepared:
            return []
        query = _HEAD_FOR_UPDATE if db.is_postgresql(conn) else _HEAD
        ((last_seq, prev_hash),) = query.execute(conn)
        seq = int(last_seq)
        made, rows = [], []
        for e, text, payload in prepared:
            seq += 1
            ts = db.now()
            digest = record_hash(
                prev_hash,
                seq=seq,
                ts=ts,
                kind=e.kind,
                member_id=e.member_id,
                key_id=e.key_id,
                data=payload,
            )
            rows.append(
                {
                    "seq": seq,
                    "ts": ts,
                    "prev_hash": prev_hash,
                    "hash": digest,
                    "kind": e.kind,
                    "member_id": e.member_id,
                    "key_id": e.key_id,
                    "data": text,
                }
            )
            made.append(
                AuditRecord(seq, ts, prev_hash, digest, e.kind, e.member_id, e.key_id, payload)
            )
            prev_hash = digest
        _INSERT.execute(conn, rows)
        _MOVE_HEAD.execute(conn, {"new_seq": seq, "new_hash": prev_hash})
        return made

    def records(
        self,
        *,
        member_id: int | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Records in seq order after `after_seq`, optionally only those about one member."""
        a = db.audit
        query = sa.select(a).where(a.c.seq > after_seq).order_by(a.c.seq).limit(limit)
        if member_id is not None:
            query = query.where(a.c.member_id == member_id)
        with db.read(self.engine) as conn:
            return [_record(row) for row in conn.execute(query)]

    def head(self) -> tuple[int, str]:
        h = db.audit_head
        with db.read(self.engine) as conn:
            seq, digest = conn.execute(sa.select(h.c.seq, h.c.hash).where(h.c.id == 1)).one()
        return int(seq), str(digest)

    def verify(self) -> VerifyResult:
        """Check the whole chain; stops at the first bad record."""
        head_seq, head_hash = self.head()
        a = db.audit
        expected, prev_hash, checked = 1, GENESIS, 0

        def bad(seq: int, reason: str) -> VerifyResult:
            return VerifyResult(False, checked, seq, reason, head_seq, head_hash)

        while True:
            with db.read(self.engine) as conn:
                rows = conn.execute(
                    sa.select(a).where(a.c.seq >= expected).order_by(a.c.seq).limit(PAGE)
                ).all()
            if not rows:
                break
            for row in rows:
                seq = int(row.seq)
                if seq != expected:
                    return bad(expected, f"record {expected} is missing (deleted)")
                if row.prev_hash != prev_hash:
                    return bad(
                        seq,
                        f"record {seq} does not follow record {seq - 1} "
                        "(prev_hash mismatch: reordered, inserted or its predecessor altered)",
                    )
                try:
                    data = json.loads(row.data)
                except ValueError:
                    return bad(seq, f"record {seq} is altered (its data is not JSON)")
                digest = record_hash(
                    prev_hash,
                    seq=seq,
                    ts=row.ts,
                    kind=row.kind,
                    member_id=row.member_id,
                    key_id=row.key_id,
                    data=data,
                )
                if digest != row.hash:
                    return bad(seq, f"record {seq} is altered (its hash does not match)")
                prev_hash, expected, checked = digest, expected + 1, checked + 1
        last = expected - 1
        if head_seq > last:
            return bad(expected, f"records {expected}..{head_seq} are missing (head is {head_seq})")
        if head_seq < last or head_hash != prev_hash:
            return bad(last, f"record {last} does not match the chain head")
        return VerifyResult(True, checked, None, None, head_seq, head_hash)


def _record(row: sa.Row[tuple[object, ...]]) -> AuditRecord:
    v = row._mapping
    return AuditRecord(
        seq=int(cast(int, v["seq"])),
        ts=cast(datetime, v["ts"]),
        prev_hash=cast(str, v["prev_hash"]),
        hash=cast(str, v["hash"]),
        kind=cast(str, v["kind"]),
        member_id=cast("int | None", v["member_id"]),
        key_id=cast("int | None", v["key_id"]),
        data=json.loads(cast(str, v["data"])),
    )


__all__ = [
    "GENESIS",
    "AuditLog",
    "AuditRecord",
    "Entry",
    "VerifyResult",
    "canonical_json",
    "record_hash",
]
