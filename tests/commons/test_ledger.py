"""The usage ledger: aggregates, isolation by member, contribution of nodes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from allmende.commons import db, keys, ledger, members, nodes


def entry(member_id: int, model: str = "m1", **kw: object) -> ledger.LedgerEntry:
    fields: dict[str, object] = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 20,
        "status": 200,
    }
    fields.update(kw)
    return ledger.LedgerEntry(member_id=member_id, model=model, **fields)  # type: ignore[arg-type]


def test_usage_aggregates_per_member_and_model(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    b = members.add_member(engine, "beta")
    key = keys.create_key(engine, "acme").info.id
    ledger.record(engine, entry(a.id, key_id=key))
    ledger.record(engine, entry(a.id, key_id=key, status=500, completion_tokens=0))
    ledger.record(engine, entry(a.id, "m2"))
    ledger.record(engine, entry(b.id, prompt_tokens=100))
    rows = ledger.usage(engine)
    assert [(r.member, r.model, r.requests, r.errors, r.total_tokens) for r in rows] == [
        ("acme", "m1", 2, 1, 25),
        ("acme", "m2", 1, 0, 15),
        ("beta", "m1", 1, 0, 105),
    ]
    assert rows[0].to_dict()["total_tokens"] == 25


def test_usage_of_one_member_never_includes_another(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    b = members.add_member(engine, "beta")
    for _ in range(3):
        ledger.record(engine, entry(a.id))
        ledger.record(engine, entry(b.id))
    principal = keys.Principal(a.id, "acme", 1, "member")
    only = keys.visible_member(principal, None)
    assert {r.member_id for r in ledger.usage(engine, member_id=only)} == {a.id}
    assert {e.member_id for e in ledger.entries(engine, member_id=only)} == {a.id}
    assert len(ledger.entries(engine)) == 6


def test_usage_since(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    old = db.now() - timedelta(days=3)
    ledger.record(engine, entry(a.id, ts=old))
    ledger.record(engine, entry(a.id))
    since = db.now() - timedelta(days=1)
    assert [r.requests for r in ledger.usage(engine, since=since)] == [1]
    assert [r.requests for r in ledger.usage(engine)] == [2]
    (newest, oldest) = ledger.entries(engine)
    assert oldest.ts == old  # microseconds and time zone survive the round trip


def test_request_ids_are_unique(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    ledger.record(engine, entry(a.id, request_id="r1"))
    with pytest.raises(IntegrityError):
        ledger.record(engine, entry(a.id, request_id="r1"))


def test_contribution_counts_tokens_served_to_others(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    b = members.add_member(engine, "beta")
    c = members.add_member(engine, "gamma")
    node_a = nodes.add_node(engine, "acme", "gpu1", "http://a:8000/v1")
    node_b = nodes.add_node(engine, "beta", "gpu2", "http://b:8000/v1")
    ledger.record(engine, entry(b.id, node_id=node_a.id))  # 15 tokens for beta on acme's node
    ledger.record(engine, entry(c.id, node_id=node_a.id, prompt_tokens=85))  # 90 for gamma
    ledger.record(engine, entry(a.id, node_id=node_a.id))  # acme's own: not a contribution
    ledger.record(engine, entry(a.id, node_id=node_b.id))  # 15 for acme on beta's node
    ledger.record(engine, entry(a.id))  # served by no node
    rows = ledger.contribution(engine)
    assert [(r.member, r.requests, r.tokens) for r in rows] == [("acme", 2, 105), ("beta", 1, 15)]
    assert [r.member for r in ledger.contribution(engine, member_id=b.id)] == ["beta"]
    assert [n.name for n in nodes.list_nodes(engine, "acme")] == ["gpu1"]


def test_history_is_kept_when_a_member_is_removed(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    nodes.add_node(engine, "acme", "gpu1", "http://a:8000/v1")
    ledger.record(engine, entry(a.id))
    members.remove_member(engine, "acme")
    assert [r.member for r in ledger.usage(engine)] == ["acme"]
    assert nodes.list_nodes(engine) == []
