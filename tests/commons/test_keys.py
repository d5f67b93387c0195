"""Members and keys: lifecycle, hashing, revocation, expiry, scopes, isolation helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from allmende.commons import db, keys, members
from allmende.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)


def dump(engine: Engine) -> str:
    """Every value in every table, as text."""
    out: list[str] = []
    with engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            out.extend(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    return "\n".join(out)


def test_members_add_list_remove(engine: Engine) -> None:
    a = members.add_member(engine, "acme")
    members.add_member(engine, "beta")
    assert [m.name for m in members.list_members(engine)] == ["acme", "beta"]
    with pytest.raises(ConflictError):
        members.add_member(engine, "acme")
    with pytest.raises(InvalidRequestError):
        members.add_member(engine, "bad name!")
    removed = members.remove_member(engine, "acme")
    assert removed.removed is not None
    assert [m.name for m in members.list_members(engine)] == ["beta"]
    assert len(members.list_members(engine, include_removed=True)) == 2
    with pytest.raises(NotFoundError):
        members.remove_member(engine, "acme")
    again = members.add_member(engine, "acme")  # the name is free again, with a new id
    assert again.id != a.id


def test_key_is_shown_once_and_only_its_hash_is_stored(engine: Engine) -> None:
    members.add_member(engine, "acme")
    new = keys.create_key(engine, "acme")
    assert new.secret.startswith("alm-") and len(new.secret) == 4 + 43
    text = dump(engine)
    assert new.secret not in text
    assert new.secret[4:] not in text  # not even the random part
    assert keys.hash_key(new.secret) in text
    assert new.info.prefix == new.secret[: keys.PREFIX_LEN]
    listed = keys.list_keys(engine, "acme")
    assert [k.id for k in listed] == [new.info.id]
    assert "secret" not in vars(listed[0])


def test_authenticate(engine: Engine) -> None:
    member = members.add_member(engine, "acme")
    new = keys.create_key(engine, "acme", scope="admin", limits=keys.Limits(rpm=5))
    principal = keys.authenticate(engine, new.secret)
    assert principal == keys.Principal(member.id, "acme", new.info.id, "admin", keys.Limits(rpm=5))
    assert principal.is_admin


@pytest.mark.parametrize(
    "secret",
    ["", "sk-123", "alm-", "alm-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
)
def test_unknown_keys_are_rejected_alike(engine: Engine, secret: str) -> None:
    members.add_member(engine, "acme")
    real = keys.create_key(engine, "acme").secret
    with pytest.raises(AuthenticationError) as unknown:
        keys.authenticate(engine, secret)
    # Right prefix, wrong secret: the same answer as a key that does not exist.
    with pytest.raises(AuthenticationError) as wrong:
        keys.authenticate(engine, real[:-1] + ("A" if real[-1] != "A" else "B"))
    assert unknown.value.message == wrong.value.message == "Incorrect API key provided."
    assert unknown.value.status == 401 and unknown.value.code == "invalid_api_key"
    assert unknown.value.type == "authentication_error"


def test_revoked_and_expired_keys_are_rejected(engine: Engine) -> None:
    members.add_member(engine, "acme")
    revoked = keys.create_key(engine, "acme")
    info = keys.revoke_key(engine, revoked.info.prefix)
    assert info.revoked is not None
    assert keys.revoke_key(engine, revoked.info.id).revoked == info.revoked  # idempotent
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.authenticate(engine, revoked.secret)
    soon = keys.create_key(engine, "acme", expires=db.now() + timedelta(hours=1))
    assert keys.authenticate(engine, soon.secret).key_id == soon.info.id
    with pytest.raises(AuthenticationError, match="expired"):
        keys.authenticate(engine, soon.secret, at=db.now() + timedelta(hours=2))
    with pytest.raises(InvalidRequestError):
        keys.create_key(engine, "acme", expires=db.now() - timedelta(seconds=1))
    with pytest.raises(NotFoundError):
        keys.revoke_key(engine, "alm-nothere")


def test_removing_a_member_revokes_its_keys(engine: Engine) -> None:
    members.add_member(engine, "acme")
    new = keys.create_key(engine, "acme")
    members.remove_member(engine, "acme")
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.authenticate(engine, new.secret)
    with pytest.raises(NotFoundError):
        keys.create_key(engine, "acme")


def test_scopes_and_limits(engine: Engine) -> None:
    members.add_member(engine, "acme")
    with pytest.raises(InvalidRequestError):
        keys.create_key(engine, "acme", scope="root")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        keys.create_key(engine, "acme", limits=keys.Limits(rpm=-1))
    new = keys.create_key(engine, "acme")
    assert keys.authenticate(engine, new.secret).scope == "member"
    info = keys.set_limits(engine, new.info.id, keys.Limits(rpm=1, tpd=100))
    assert info.limits == keys.Limits(rpm=1, tpd=100)
    assert keys.authenticate(engine, new.secret).limits == keys.Limits(rpm=1, tpd=100)
    assert keys.set_limits(engine, new.info.id, keys.Limits()).limits == keys.Limits()


def test_visible_member() -> None:
    member = keys.Principal(1, "acme", 10, "member")
    admin = keys.Principal(2, "ops", 20, "admin")
    assert keys.visible_member(member, None) == 1
    assert keys.visible_member(member, 1) == 1
    with pytest.raises(PermissionDeniedError) as denied:
        keys.visible_member(member, 2)
    assert denied.value.status == 403 and denied.value.type == "permission_error"
    assert keys.visible_member(admin, None) is None
    assert keys.visible_member(admin, 1) == 1
    keys.require_admin(admin)
    with pytest.raises(PermissionDeniedError):
        keys.require_admin(member)
