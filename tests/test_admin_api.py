"""The commons over HTTP (allmende/api/admin.py): member isolation and admin routes.

Each test builds a small commons in a temporary SQLite file before the app starts (the gate
looks for keys on its first request, so no waiting for its one-second cache is needed)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute

from allmende.api.admin import router as admin_router
from allmende.commons import db, keys, ledger, members, nodes
from allmende.commons.audit import AuditLog
from allmende.commons.keys import Limits
from allmende.config import Settings

from .conftest import fake_engine, serve_app

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
ADMIN_KINDS = {
    "admin.node.token",
    "admin.node.token.revoke",
    "admin.member.add",
    "admin.member.remove",
    "admin.key.create",
    "admin.key.revoke",
    "admin.key.limits",
    "admin.node.add",
    "admin.node.remove",
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(r: httpx.Response, status: int, type_: str, param: str | None = None) -> str:
    """Assert `r` is the OpenAI error envelope with this status, type and param; its code."""
    assert r.status_code == status, (r.request.method, r.request.url, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == type_, body
    assert body["error"]["param"] == param, body
    assert body["error"]["message"]
    return str(body["error"]["code"])


@dataclass
class World:
    engine: sa.Engine
    admin: str  # ops, scope admin
    alice: str
    bob: str
    revoked: str  # an admin key, revoked
    expired: str  # an admin key, expired
    ids: dict[str, int]  # member name -> id
    admin_key_id: int
    spare_key_id: int  # a key of alice's for the admin routes to change
    bob_node_id: int


def build_world(engine: sa.Engine) -> World:
    for name in ("ops", "alice", "bob", "dave"):
        members.add_member(engine, name)
    ids = {m.name: m.id for m in members.list_members(engine)}
    admin = keys.create_key(engine, "ops", scope="admin")
    alice = keys.create_key(engine, "alice")
    bob = keys.create_key(engine, "bob")
    spare = keys.create_key(engine, "alice")
    revoked = keys.create_key(engine, "ops", scope="admin")
    keys.revoke_key(engine, revoked.info.id)
    expired = keys.create_key(engine, "ops", scope="admin", expires=db.now() + timedelta(hours=1))
    with db.write(engine) as conn:  # expired a second ago, without waiting for it
        conn.execute(
            sa.update(db.api_keys)
            .where(db.api_keys.c.id == expired.info.id)
            .values(expires=db.now() - timedelta(seconds=1))
        )
    node_a = nodes.add_node(engine, "alice", "node-a", "http://a.example:8000")
    node_b = nodes.add_node(engine, "bob", "node-b", "http://b.example:8000")

    def entry(member: str, key: int, n: int, node: int | None = None, status: int = 200) -> None:
        ledger.record(
            engine,
            ledger.LedgerEntry(
                member_id=ids[member],
                key_id=key,
                model="fake",
                prompt_tokens=n,
                completion_tokens=n,
                latency_ms=5,
                status=status,
                node_id=node,
                request_id=f"req-{member}-{n}",
            ),
        )

    entry("alice", alice.info.id, 1)
    entry("alice", alice.info.id, 2, node=node_b.id)  # bob's node serves alice: bob contributes
    entry("alice", alice.info.id, 3, node=node_a.id)  # her own node: no contribution
    entry("bob", bob.info.id, 4, node=node_a.id)  # alice's node serves bob: alice contributes
    entry("bob", bob.info.id, 5, status=500)
    log = AuditLog(engine)
    for member, key in (("alice", alice.info.id), ("bob", bob.info.id)) * 2:
        log.append("request", {"who": member}, member_id=ids[member], key_id=key)
    log.append("system", {"note": "about no member"})
    return World(
        engine,
        admin.secret,
        alice.secret,
        bob.secret,
        revoked.secret,
        expired.secret,
        ids,
        admin.info.id,
        spare.info.id,
        node_b.id,
    )


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """On SQLite and on PostgreSQL."""
    return Settings(data_dir=str(tmp_path), database_url=db_url)


@pytest.fixture
def commons(settings: Settings) -> Iterator[sa.Engine]:
    engine = db.open_database(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def world(commons: sa.Engine) -> World:
    return build_world(commons)


@pytest.fixture
async def client(settings: Settings, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async for _, c in serve_app([fake_engine()], settings):
        yield c


# Every route of the module: method, path template, a body that an admin key gets accepted
# (in this order, on a fresh world), and the status it then answers.
ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/v1/admin/members", None, 200),
    ("POST", "/v1/admin/members", {"name": "carol"}, 201),
    ("DELETE", "/v1/admin/members/{name}", None, 200),
    ("GET", "/v1/admin/keys", None, 200),
    ("POST", "/v1/admin/keys", {"member": "alice", "rpm": 10}, 201),
    ("PUT", "/v1/admin/keys/{key}/limits", {"tpm": 1000}, 200),
    ("DELETE", "/v1/admin/keys/{key}", None, 200),
    ("GET", "/v1/admin/audit/verify", None, 200),
    ("GET", "/v1/admin/nodes", None, 200),
    ("POST", "/v1/admin/nodes", {"url": "https://n.example/v1", "member": "alice"}, 201),
    ("DELETE", "/v1/admin/nodes/{node_id}", None, 200),
    ("GET", "/v1/admin/nodes/tokens", None, 200),
    ("POST", "/v1/admin/nodes/tokens", {"member": "alice", "max_slots": 2}, 201),
    ("DELETE", "/v1/admin/nodes/tokens/{token_id}", None, 200),
]
MEMBER_ROUTES = ["/v1/me", "/v1/usage", "/v1/ledger", "/v1/contribution", "/v1/audit"]


def concrete(path: str, w: World) -> str:
    return path.format(name="dave", key=w.spare_key_id, node_id=w.bob_node_id, token_id=1)


def test_the_tables_cover_every_route_of_the_module() -> None:
    routes = {
        (method, route.path)
        for route in admin_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    listed = {(m, p) for m, p, _, _ in ADMIN_ROUTES} | {("GET", p) for p in MEMBER_ROUTES}
    assert routes == listed


async def test_no_key_yet_every_commons_route_is_401(settings: Settings) -> None:
    async for _, c in serve_app([fake_engine()], settings):
        assert (await c.get("/v1/models")).status_code == 200  # the API itself is open
        calls: list[tuple[str, str, dict[str, Any] | None]]
        calls = [("GET", p, None) for p in MEMBER_ROUTES]
        calls += [
            (m, p.format(name="x", key=1, node_id=1, token_id=1), b) for m, p, b, _ in ADMIN_ROUTES
        ]
        for method, path, body in calls:
            for headers in ({}, bearer("alm-" + "x" * 43)):
                r = await c.request(method, path, json=body, headers=headers)
                error_of(r, 401, "authentication_error")
                assert "needs an API key" in r.json()["error"]["message"]


def snapshot(engine: sa.Engine) -> Any:
    return (
        members.list_members(engine, include_removed=True),
        keys.list_keys(engine),
        nodes.list_nodes(engine),
        AuditLog(engine).head(),
    )


async def test_admin_routes_refuse_everyone_but_an_admin_key(
    client: httpx.AsyncClient, world: World
) -> None:
    before = snapshot(world.engine)
    refused = [
        (bearer(world.alice), 403, "permission_error", "needs an admin key"),
        (bearer(world.revoked), 401, "authentication_error", "revoked"),
        (bearer(world.expired), 401, "authentication_error", "expired"),
        ({}, 401, "authentication_error", "needs an API key"),
        (bearer(world.admin[:-3] + "abc"), 401, "authentication_error", "Incorrect"),
    ]
    for method, path, body, _ in ADMIN_ROUTES:
        for headers, status, kind, message in refused:
            r = await client.request(method, concrete(path, world), json=body, headers=headers)
            error_of(r, status, kind)
            assert message in r.json()["error"]["message"]
    assert snapshot(world.engine) == before  # nothing changed, nothing was audited


async def test_admin_routes_work_with_an_admin_key(client: httpx.AsyncClient, world: World) -> None:
    seen_kinds = []
    for method, path, body, status in ADMIN_ROUTES:
        head = AuditLog(world.engine).head()[0]
        r = await client.request(
            method, concrete(path, world), json=body, headers=bearer(world.admin)
        )
        assert r.status_code == status, (method, path, r.text)
        new = AuditLog(world.engine).records(after_seq=head)
        if method == "GET":
            assert new == []
        else:
            [record] = new
            assert record.key_id == world.admin_key_id and record.data["by"] == "ops"
            seen_kinds.append(record.kind)
    assert set(seen_kinds) == ADMIN_KINDS

    e = world.engine
    assert [m.name for m in members.list_members(e)] == ["alice", "bob", "carol", "ops"]
    spare = keys.get_key(e, world.spare_key_id)
    assert spare.revoked is not None and spare.limits == Limits(tpm=1000)
    assert [(n.member, n.name) for n in nodes.list_nodes(e)] == [
        ("alice", "node-a"),
        ("alice", "n.example"),
    ]
    assert AuditLog(e).verify().ok


async def test_admin_listings(client: httpx.AsyncClient, world: World) -> None:
    h = bearer(world.admin)
    got = (await client.get("/v1/admin/members", headers=h)).json()
    assert got["object"] == "list"
    assert [m["name"] for m in got["data"]] == ["alice", "bob", "dave", "ops"]
    await client.delete("/v1/admin/members/dave", headers=h)
    names = [m["name"] for m in (await client.get("/v1/admin/members", headers=h)).json()["data"]]
    assert "dave" not in names
    every = (await client.get("/v1/admin/members", params={"all": "true"}, headers=h)).json()
    [dave] = [m for m in every["data"] if m["name"] == "dave"]
    assert dave["removed"] is not None

    listed = (await client.get("/v1/admin/keys", params={"member": "bob"}, headers=h)).json()
    assert [(k["member"], k["scope"]) for k in listed["data"]] == [("bob", "member")]
    assert world.bob not in json.dumps(listed)  # prefixes only, never a key
    assert world.bob[:12] == listed["data"][0]["prefix"]
    all_keys = (await client.get("/v1/admin/keys", headers=h)).json()["data"]
    assert len(all_keys) == 6
    for secret in (world.admin, world.alice, world.bob, world.revoked, world.expired):
        assert secret not in json.dumps(all_keys)

    bobs = (await client.get("/v1/admin/nodes", params={"member": "bob"}, headers=h)).json()
    assert [(n["id"], n["url"]) for n in bobs["data"]] == [
        (world.bob_node_id, "http://b.example:8000")
    ]
    verify = (await client.get("/v1/admin/audit/verify", headers=h)).json()
    assert verify["ok"] is True and verify["checked"] == verify["head_seq"] == 6


async def test_member_routes_never_show_another_members_records(
    client: httpx.AsyncClient, world: World
) -> None:
    ledger_ids = {"alice": {"req-alice-1", "req-alice-2", "req-alice-3"}}
    ledger_ids["bob"] = {"req-bob-4", "req-bob-5"}
    for me, other, key in (("alice", "bob", world.alice), ("bob", "alice", world.bob)):
        h = bearer(key)
        for path in MEMBER_ROUTES[1:]:
            for asked in (other, "ghost", "ops"):  # ghost: 403 too, so names cannot be probed
                r = await client.get(path, params={"member": asked}, headers=h)
                assert error_of(r, 403, "permission_error") == "permission_denied"
            assert (await client.get(path, params={"member": me}, headers=h)).status_code == 200

        usage = (await client.get("/v1/usage", headers=h)).json()["data"]
        assert {row["member"] for row in usage} == {me}
        assert usage[0]["requests"] == len(ledger_ids[me])

        rows = (await client.get("/v1/ledger", headers=h)).json()["data"]
        assert {row["request_id"] for row in rows} == ledger_ids[me]
        assert {row["member_id"] for row in rows} == {world.ids[me]}
        assert [row["ts"] for row in rows] == sorted((row["ts"] for row in rows), reverse=True)
        one = (await client.get("/v1/ledger", params={"limit": 1}, headers=h)).json()["data"]
        assert [row["request_id"] for row in one] == [rows[0]["request_id"]]

        given = (await client.get("/v1/contribution", headers=h)).json()["data"]
        assert given == [
            {
                "member_id": world.ids[me],
                "member": me,
                "requests": 1,
                "tokens": 2 * (2 if me == "bob" else 4),
            }
        ]

        records = (await client.get("/v1/audit", headers=h)).json()["data"]
        assert len(records) == 2
        assert all(
            rec["member_id"] == world.ids[me] and rec["data"]["who"] == me for rec in records
        )
        # Paging past one's own records must not step onto anyone else's.
        first = (await client.get("/v1/audit", params={"limit": 1}, headers=h)).json()["data"]
        rest = await client.get("/v1/audit", params={"after_seq": first[0]["seq"]}, headers=h)
        assert [rec["seq"] for rec in first + rest.json()["data"]] == [r["seq"] for r in records]

        mine = (await client.get("/v1/me", headers=h)).json()
        assert (mine["member"], mine["member_id"], mine["scope"]) == (me, world.ids[me], "member")
        assert mine["prefix"] == key[:12]


async def test_an_admin_key_reads_everyone_or_one_member(
    client: httpx.AsyncClient, world: World
) -> None:
    h = bearer(world.admin)
    usage = (await client.get("/v1/usage", headers=h)).json()["data"]
    assert sorted(row["member"] for row in usage) == ["alice", "bob"]
    assert len((await client.get("/v1/ledger", headers=h)).json()["data"]) == 5
    given = (await client.get("/v1/contribution", headers=h)).json()["data"]
    assert [(row["member"], row["tokens"]) for row in given] == [("alice", 8), ("bob", 4)]
    assert len((await client.get("/v1/audit", headers=h)).json()["data"]) == 5
    for path in MEMBER_ROUTES[1:]:
        got = (await client.get(path, params={"member": "bob"}, headers=h)).json()["data"]
        assert got and {row["member_id"] for row in got} == {world.ids["bob"]}, path
        r = await client.get(path, params={"member": "ghost"}, headers=h)
        assert error_of(r, 404, "invalid_request_error") == "not_found"
    me = (await client.get("/v1/me", headers=h)).json()
    assert (me["member"], me["scope"], me["key_id"]) == ("ops", "admin", world.admin_key_id)


async def test_a_key_created_over_http_works_and_obeys_its_limits(
    client: httpx.AsyncClient, world: World
) -> None:
    h = bearer(world.admin)
    expires = (db.now() + timedelta(hours=1)).isoformat()
    body = {"member": "alice", "rpm": 100, "expires": expires}
    r = await client.post("/v1/admin/keys", json=body, headers=h)
    assert r.status_code == 201
    made = r.json()
    secret = made["key"]
    assert secret.startswith("alm-") and made["prefix"] == secret[:12]
    assert (made["member"], made["scope"], made["revoked"]) == ("alice", "member", None)
    assert made["limits"] == {"rpm": 100, "tpm": None, "tpd": None}

    me = (await client.get("/v1/me", headers=bearer(secret))).json()
    assert (me["member"], me["key_id"], me["scope"]) == ("alice", made["id"], "member")
    assert me["expires"] == made["expires"] and me["limits"]["rpm"] == 100
    chat = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret))
    assert chat.status_code == 200
    [row] = (await client.get("/v1/ledger", params={"limit": 1}, headers=bearer(secret))).json()[
        "data"
    ]
    assert row["key_id"] == made["id"]
    r = await client.get("/v1/admin/members", headers=bearer(secret))
    error_of(r, 403, "permission_error")  # a member key, whoever made it

    r = await client.put(f"/v1/admin/keys/{made['prefix']}/limits", json={"rpm": 1}, headers=h)
    assert r.json()["limits"] == {"rpm": 1, "tpm": None, "tpd": None}
    # One request a minute: of three in a row at most two (either side of a minute) pass.
    answers = [await client.get("/v1/me", headers=bearer(secret)) for _ in range(3)]
    [refused, *_] = [r for r in answers if r.status_code != 200]
    assert error_of(refused, 429, "rate_limit_error") == "rate_limit_exceeded"

    r = await client.delete(f"/v1/admin/keys/{made['prefix']}", headers=h)
    assert r.status_code == 200 and r.json()["revoked"] is not None
    r = await client.get("/v1/me", headers=bearer(secret))
    error_of(r, 401, "authentication_error")
    assert "revoked" in r.json()["error"]["message"]

    r = await client.post("/v1/admin/keys", json={"member": "bob", "scope": "admin"}, headers=h)
    other_admin = r.json()["key"]
    assert (await client.get("/v1/admin/members", headers=bearer(other_admin))).status_code == 200
    r = await client.get("/v1/usage", params={"member": "alice"}, headers=bearer(other_admin))
    assert r.status_code == 200


async def test_admin_actions_are_audited_and_the_chain_verifies(
    client: httpx.AsyncClient, world: World
) -> None:
    h = bearer(world.admin)
    assert (await client.post("/v1/admin/members", json={"name": "erin"}, headers=h)).is_success
    made = (await client.post("/v1/admin/keys", json={"member": "alice"}, headers=h)).json()
    await client.put(f"/v1/admin/keys/{made['id']}/limits", json={"tpd": 5}, headers=h)
    await client.delete(f"/v1/admin/keys/{made['id']}", headers=h)
    node = (
        await client.post(
            "/v1/admin/nodes", json={"url": "http://e.example", "member": "erin"}, headers=h
        )
    ).json()
    assert (node["slots"], node["has_api_key"]) == (4, False)
    await client.delete(f"/v1/admin/nodes/{node['id']}", headers=h)
    await client.delete("/v1/admin/members/erin", headers=h)

    verify = (await client.get("/v1/admin/audit/verify", headers=h)).json()
    assert verify["ok"] is True and verify["checked"] == verify["head_seq"] == 5 + 7
    assert AuditLog(world.engine).verify().ok

    records = (await client.get("/v1/audit", params={"after_seq": 5}, headers=h)).json()["data"]
    assert [r["kind"] for r in records] == [
        "admin.member.add",
        "admin.key.create",
        "admin.key.limits",
        "admin.key.revoke",
        "admin.node.add",
        "admin.node.remove",
        "admin.member.remove",
    ]
    assert {r["key_id"] for r in records} == {world.admin_key_id}
    assert made["key"] not in json.dumps(records)  # the key itself is never in the log
    erin = records[0]["member_id"]
    assert [r["member_id"] for r in records] == [erin] + [world.ids["alice"]] * 3 + [erin] * 3
    assert records[2]["data"]["limits"] == {"rpm": None, "tpm": None, "tpd": 5}

    # Alice sees the records about her own keys, and nothing about erin's.
    mine = (await client.get("/v1/audit", headers=bearer(world.alice))).json()["data"]
    assert [r["kind"] for r in mine] == [
        "request",
        "request",
        "admin.key.create",
        "admin.key.limits",
        "admin.key.revoke",
    ]

    with db.write(world.engine) as conn:  # tamper with record 7 in place
        conn.execute(sa.update(db.audit).where(db.audit.c.seq == 7).values(data='{"x":1}'))
    verify = (await client.get("/v1/admin/audit/verify", headers=h)).json()
    assert (verify["ok"], verify["first_bad_seq"]) == (False, 7)


async def test_bad_requests_are_clean_envelopes(client: httpx.AsyncClient, world: World) -> None:
    h = bearer(world.admin)
    head = AuditLog(world.engine).head()
    future = (db.now() + timedelta(days=1)).isoformat()
    past = (db.now() - timedelta(days=1)).isoformat()
    cases: list[tuple[str, str, Any, int, str | None]] = [
        ("POST", "/v1/admin/members", b"{nope", 400, None),
        ("POST", "/v1/admin/members", b"", 400, None),
        ("POST", "/v1/admin/members", [1], 400, None),
        ("POST", "/v1/admin/members", {}, 400, "name"),
        ("POST", "/v1/admin/members", {"name": 5}, 400, "name"),
        ("POST", "/v1/admin/members", {"name": "a b"}, 400, "name"),
        ("POST", "/v1/admin/members", {"name": "x", "admin": True}, 400, "admin"),
        ("POST", "/v1/admin/members", {"name": "alice"}, 409, None),
        ("DELETE", "/v1/admin/members/ghost", None, 404, None),
        ("POST", "/v1/admin/keys", {"member": "ghost"}, 404, "member"),
        ("POST", "/v1/admin/keys", {"member": "alice", "expires": "soon"}, 400, "expires"),
        ("POST", "/v1/admin/keys", {"member": "alice", "expires": past}, 400, "expires"),
        ("POST", "/v1/admin/keys", {"member": "alice", "scope": "root"}, 400, "scope"),
        ("POST", "/v1/admin/keys", {"member": "alice", "rpm": -1}, 400, "rpm"),
        ("POST", "/v1/admin/keys", {"member": "alice", "tpm": "9"}, 400, "tpm"),
        ("POST", "/v1/admin/keys", {"scope": "admin", "expires": future}, 400, "member"),
        ("GET", "/v1/admin/keys?member=ghost", None, 404, None),
        ("DELETE", "/v1/admin/keys/alm-nothere", None, 404, None),
        ("DELETE", "/v1/admin/keys/999999", None, 404, None),
        ("DELETE", "/v1/admin/keys/99999999999999999999999", None, 404, None),
        ("PUT", "/v1/admin/keys/999999/limits", {}, 404, None),
        ("PUT", f"/v1/admin/keys/{world.spare_key_id}/limits", {"tpd": -5}, 400, "tpd"),
        ("POST", "/v1/admin/nodes", {"url": "ftp://x.example", "member": "bob"}, 400, "url"),
        ("POST", "/v1/admin/nodes", {"url": "x.example:80", "member": "bob"}, 400, "url"),
        ("POST", "/v1/admin/nodes", {"url": "http://", "member": "bob"}, 400, "url"),
        ("POST", "/v1/admin/nodes", {"url": "http://h:port", "member": "bob"}, 400, "url"),
        ("POST", "/v1/admin/nodes", {"url": "http://h.example", "member": "ghost"}, 404, "member"),
        ("POST", "/v1/admin/nodes", {"member": "bob"}, 400, "url"),
        ("POST", "/v1/admin/nodes", {"url": "http://h.example?q=1", "member": "bob"}, 400, "url"),
        (
            "POST",
            "/v1/admin/nodes",
            {"url": "http://h.example", "member": "bob", "slots": 0},
            400,
            "slots",
        ),
        (
            "POST",
            "/v1/admin/nodes",
            {"url": "http://h.example", "member": "bob", "api_key": 1},
            400,
            "api_key",
        ),
        ("GET", "/v1/admin/nodes?member=ghost", None, 404, None),
        ("DELETE", "/v1/admin/nodes/abc", None, 404, None),
        ("DELETE", "/v1/admin/nodes/999999", None, 404, None),
        ("GET", "/v1/admin/members?all=maybe", None, 400, "all"),
        ("GET", "/v1/ledger?limit=0", None, 400, "limit"),
        ("GET", "/v1/ledger?limit=1001", None, 400, "limit"),
        ("GET", "/v1/ledger?limit=ten", None, 400, "limit"),
        ("GET", "/v1/ledger?since=yesterday", None, 400, "since"),
        ("GET", "/v1/usage?since=2025-13-01", None, 400, "since"),
        ("GET", "/v1/contribution?since=x", None, 400, "since"),
        ("GET", "/v1/usage?since=0001-01-01T00:00:00%2B01:00", None, 400, "since"),
        ("GET", "/v1/audit?after_seq=-1", None, 400, "after_seq"),
        ("GET", "/v1/audit?limit=5000", None, 400, "limit"),
        ("GET", "/v1/admin/nowhere", None, 404, None),
        ("PATCH", "/v1/admin/members", None, 405, None),
    ]
    for method, path, body, status, param in cases:
        if isinstance(body, bytes):
            r = await client.request(
                method, path, content=body, headers={**h, "Content-Type": "application/json"}
            )
        else:
            r = await client.request(method, path, json=body, headers=h)
        assert r.status_code == status, (method, path, body, r.text)
        error_of(r, status, "invalid_request_error", param)
    assert AuditLog(world.engine).head() == head  # refused actions leave no record

    # A time without a zone is UTC, never a server error.
    for path in ("/v1/usage", "/v1/ledger", "/v1/contribution"):
        r = await client.get(path, params={"since": "2020-01-01"}, headers=h)
        assert r.status_code == 200, (path, r.text)
    r = await client.get("/v1/ledger", params={"since": "2999-01-01T00:00:00Z"}, headers=h)
    assert r.json()["data"] == []


async def test_a_node_key_is_never_shown_or_audited(
    client: httpx.AsyncClient, world: World
) -> None:
    h = bearer(world.admin)
    body = {"url": "http://k.example:9000/", "member": "bob", "slots": 2, "api_key": "sk-node-1"}
    r = await client.post("/v1/admin/nodes", json=body, headers=h)
    assert r.status_code == 201
    node = r.json()
    assert (node["url"], node["name"], node["slots"], node["has_api_key"]) == (
        "http://k.example:9000",
        "k.example:9000",
        2,
        True,
    )
    listed = await client.get("/v1/admin/nodes", headers=h)
    audit = await client.get("/v1/audit", headers=h)
    for text in (r.text, listed.text, audit.text):
        assert "sk-node-1" not in text
    [stored] = [n for n in nodes.list_nodes(world.engine) if n.id == node["id"]]
    assert stored.api_key == "sk-node-1"  # kept for the gateway to present
