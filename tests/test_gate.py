"""API keys, per-key limits, ledger and audit at the API (SQLite commons in a temp dir)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from allmende.commons import db, keys, ledger, members
from allmende.commons.audit import AuditLog
from allmende.commons.keys import Limits
from allmende.config import Settings
from allmende.engines.fake import FakeEngine

from .conftest import fake_engine, serve_app

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """On SQLite and on PostgreSQL."""
    return Settings(data_dir=str(tmp_path), database_url=db_url)


@pytest.fixture
def commons(settings: Settings) -> db.Engine:
    engine = db.open_database(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def client(settings: Settings, fake: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async for _, c in serve_app([fake], settings):
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(engine: db.Engine, member: str, **kwargs: object) -> str:
    try:
        members.add_member(engine, member)
    except Exception:
        pass  # already there
    return keys.create_key(engine, member, **kwargs).secret  # type: ignore[arg-type]


async def test_open_until_the_first_key(client: httpx.AsyncClient, commons: db.Engine) -> None:
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    key = make_key(commons, "acme")
    await asyncio.sleep(1.1)  # the gate re-checks for keys every second
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert (await client.get("/v1/models")).status_code == 401
    ok = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert ok.status_code == 200


async def test_bad_revoked_and_expired_keys(settings: Settings, commons: db.Engine) -> None:
    from datetime import timedelta

    good = make_key(commons, "acme")
    revoked = make_key(commons, "acme")
    keys.revoke_key(commons, revoked[:12])
    expired = make_key(commons, "acme", expires=db.now() + timedelta(seconds=1))
    time.sleep(1.1)
    async for _, c in serve_app([fake_engine()], settings):
        for key, message in [
            ("alm-nonsense", "Incorrect API key"),
            (good[:-2] + "xx", "Incorrect API key"),
            (revoked, "revoked"),
            (expired, "expired"),
        ]:
            r = await c.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
            assert r.status_code == 401, key
            assert message in r.json()["error"]["message"]
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": good})
        assert r.status_code == 401  # no Bearer scheme
        assert (await c.post("/v1/chat/completions", json=CHAT, headers=bearer(good))).is_success


async def test_rate_limit_is_429_with_retry_after(settings: Settings, commons: db.Engine) -> None:
    key = make_key(commons, "acme", limits=Limits(rpm=2))
    async for _, c in serve_app([fake_engine()], settings):
        for _ in range(2):
            r = await c.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
            assert r.status_code == 200
        r = await c.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_ledger_audit_and_isolation(settings: Settings, commons: db.Engine) -> None:
    alice = make_key(commons, "alice")
    bob = make_key(commons, "bob")
    admin = make_key(commons, "ops", scope="admin")
    async for _, c in serve_app([fake_engine()], settings):
        await c.post("/v1/chat/completions", json=CHAT, headers=bearer(alice))
        stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        r = await c.post("/v1/chat/completions", json=stream, headers=bearer(alice))
        assert r.text.endswith("data: [DONE]\n\n")
        await c.post("/v1/chat/completions", json=CHAT, headers=bearer(bob))

        mine = (await c.get("/v1/usage", headers=bearer(alice))).json()["data"]
        assert [(row["member"], row["requests"]) for row in mine] == [("alice", 2)]
        assert mine[0]["completion_tokens"] == 12
        denied = await c.get("/v1/usage", params={"member": "alice"}, headers=bearer(bob))
        assert denied.status_code == 403
        everyone = (await c.get("/v1/usage", headers=bearer(admin))).json()["data"]
        assert sorted(row["member"] for row in everyone) == ["alice", "bob"]
        one = await c.get("/v1/usage", params={"member": "bob"}, headers=bearer(admin))
        assert [row["member"] for row in one.json()["data"]] == ["bob"]

    entries = ledger.entries(commons)
    assert len(entries) == 3 and {e.status for e in entries} == {200}
    log = AuditLog(commons)
    records = log.records()
    assert [r.kind for r in records] == ["request"] * 3
    assert json.loads(json.dumps(records[1].data))["endpoint"] == "/v1/chat/completions"
    assert "content" not in records[0].data  # metadata only by default
    assert log.verify().ok


async def test_errors_are_in_the_ledger(settings: Settings, commons: db.Engine) -> None:
    key = make_key(commons, "acme")
    small = fake_engine(context_length=16)
    async for _, c in serve_app([small], settings):
        body = {**CHAT, "messages": [{"role": "user", "content": "word " * 50}]}
        r = await c.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert r.status_code == 400
    [entry] = ledger.entries(commons)
    assert entry.status == 400 and entry.completion_tokens == 0


async def test_audit_keeps_content_only_when_the_operator_turns_it_on(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), audit_content=True)
    engine = db.open_database(data_dir=tmp_path)
    key = make_key(engine, "acme")
    async for _, c in serve_app([fake_engine(responses=["one two"])], settings):
        await c.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        stream = {**CHAT, "stream": True}
        r = await c.post("/v1/chat/completions", json=stream, headers=bearer(key))
        assert r.text.endswith("data: [DONE]\n\n")
    log = AuditLog(engine)
    records = log.records()
    assert [r.data["content"] for r in records] == [
        {"request": CHAT["messages"], "answer": ["one two"]}
    ] * 2
    assert log.verify().ok
    engine.dispose()
