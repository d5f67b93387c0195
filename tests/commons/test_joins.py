"""Join tokens: one use, expiry, the member's node, and refusals that change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from allmende.commons import db, joins, members, nodes
from allmende.commons.audit import AuditLog
from allmende.errors import AuthenticationError, InvalidRequestError, NotFoundError


def test_a_token_adds_one_node_for_its_member_once(engine: Engine) -> None:
    members.add_member(engine, "acme")
    new = joins.create_token(engine, "acme", max_slots=8)
    assert new.secret.startswith("alj-") and new.info.prefix == new.secret[:12]
    assert joins.check(engine, new.secret).member == "acme"
    token, node = joins.redeem(engine, new.secret, "http://10.0.0.5:8000/", name="gpu", slots=8)
    assert (node.member, node.name, node.url, node.slots) == (
        "acme",
        "gpu",
        "http://10.0.0.5:8000",
        8,
    )
    assert token.id == new.info.id
    [listed] = joins.list_tokens(engine)
    assert listed.node_id == node.id and listed.used is not None
    with pytest.raises(AuthenticationError, match="used already"):
        joins.check(engine, new.secret)
    with pytest.raises(AuthenticationError, match="used already"):
        joins.redeem(engine, new.secret, "http://10.0.0.6:8000")
    assert [n.url for n in nodes.list_nodes(engine)] == ["http://10.0.0.5:8000"]


def test_refusals_leave_the_token_usable(engine: Engine) -> None:
    members.add_member(engine, "acme")
    new = joins.create_token(engine, "acme", max_slots=2)
    with pytest.raises(InvalidRequestError, match="at most 2 slots"):
        joins.redeem(engine, new.secret, "http://10.0.0.5:8000", slots=3)
    with pytest.raises(InvalidRequestError, match="http"):
        joins.redeem(engine, new.secret, "ftp://10.0.0.5")
    assert nodes.list_nodes(engine) == []
    joins.redeem(engine, new.secret, "http://10.0.0.5:8000", slots=2)


@pytest.mark.parametrize(
    "secret",
    ["alj-" + "x" * 43, "alm-" + "x" * 43, "alj-", "", "not a token"],
)
def test_unknown_tokens(engine: Engine, secret: str) -> None:
    members.add_member(engine, "acme")
    real = joins.create_token(engine, "acme").secret
    for bad in (secret, real[:-2] + ("aa" if real[-2:] != "aa" else "bb")):
        with pytest.raises(AuthenticationError, match="Incorrect join token"):
            joins.check(engine, bad)
        with pytest.raises(AuthenticationError, match="Incorrect join token"):
            joins.redeem(engine, bad, "http://10.0.0.5:8000")


def test_expired_tokens_and_removed_members(engine: Engine) -> None:
    members.add_member(engine, "acme")
    soon = joins.create_token(engine, "acme", expires=db.now() + timedelta(seconds=30))
    later = db.now() + timedelta(minutes=1)
    with pytest.raises(AuthenticationError, match="expired"):
        joins.check(engine, soon.secret, at=later)
    kept = joins.create_token(engine, "acme")
    members.remove_member(engine, "acme")
    members.add_member(engine, "acme")  # a new member of the same name inherits nothing
    with pytest.raises(AuthenticationError, match="removed"):
        joins.redeem(engine, kept.secret, "http://10.0.0.5:8000")


def test_creation_is_checked(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        joins.create_token(engine, "nobody")
    members.add_member(engine, "acme")
    with pytest.raises(InvalidRequestError, match="future"):
        joins.create_token(engine, "acme", expires=db.now() - timedelta(seconds=1))
    with pytest.raises(InvalidRequestError, match="max_slots"):
        joins.create_token(engine, "acme", max_slots=0)


def test_revoked_tokens_are_refused_and_used_ones_stay(engine: Engine) -> None:
    members.add_member(engine, "acme")
    spare = joins.create_token(engine, "acme")
    used = joins.create_token(engine, "acme")
    joins.redeem(engine, used.secret, "http://10.0.0.5:8000")
    assert joins.revoke(engine, spare.info.id).revoked is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        joins.redeem(engine, spare.secret, "http://10.0.0.6:8000")
    after = joins.revoke(engine, used.info.id)
    assert after.revoked is None and after.node_id is not None  # history as it was
    with pytest.raises(NotFoundError):
        joins.revoke(engine, 999)
    assert len(nodes.list_nodes(engine)) == 1


def test_the_join_and_its_audit_record_commit_together(engine: Engine) -> None:
    members.add_member(engine, "acme")
    log = AuditLog(engine)
    new = joins.create_token(engine, "acme")
    _, node = joins.redeem(engine, new.secret, "http://10.0.0.5:8000", audit=log)
    [record] = log.records()
    assert record.kind == "node.join" and record.data["node_id"] == node.id
    assert record.data["token"] == new.info.prefix and new.secret not in str(record.data)
    assert record.member_id == node.member_id
    assert log.verify().ok
