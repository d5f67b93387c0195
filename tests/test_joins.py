"""A node joins a running gateway with a join token: over HTTP and with `allmende nodes join`,
against real servers on loopback (the gateway on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

from allmende.commons import db, keys, ledger, members, nodes
from allmende.commons.audit import AuditLog
from allmende.config import Settings

from .conftest import fake_engine, live_server

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cli_join(gateway: str, node: str, token: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "ALLMENDE_JOIN_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "allmende", "nodes", "join", gateway, "--url", node, *args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_a_node_joins_with_a_token_once(tmp_path: Path, db_url: str) -> None:
    engine = db.open_database(db_url)
    members.add_member(engine, "ops")
    members.add_member(engine, "acme")
    members.add_member(engine, "beta")
    admin = {"Authorization": f"Bearer {keys.create_key(engine, 'ops', scope='admin').secret}"}
    beta = {"Authorization": f"Bearer {keys.create_key(engine, 'beta').secret}"}
    settings = Settings(
        data_dir=str(tmp_path / "gw"),
        database_url=db_url,
        default_models=False,
        node_check_interval=30,  # a joined node must be offered at once, not at the next check
    )
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            live_server([fake_engine("demo")], Settings(data_dir=str(tmp_path / "n")))
        )
        gateway = await stack.enter_async_context(live_server([], settings))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=gateway, timeout=30))
        r = await client.post("/v1/admin/nodes/tokens", json={"member": "acme"}, headers=admin)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}

        # Refusals: no token, an API key instead, a node the gateway cannot reach.
        for headers in ({}, beta):
            r = await client.post("/v1/nodes/join", json={"url": node}, headers=headers)
            assert r.status_code == 401 and "join token" in r.json()["error"]["message"]
        gone = f"http://127.0.0.1:{closed_port()}"
        r = await client.post("/v1/nodes/join", json={"url": gone}, headers=bearer)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "url" and "cannot list" in r.json()["error"]["message"]
        r = await client.post("/v1/nodes/join", json={"url": node, "slots": 0}, headers=bearer)
        assert r.status_code == 400
        assert nodes.list_nodes(engine) == []

        r = await client.post("/v1/admin/nodes/tokens", json={"member": "beta"}, headers=admin)
        revoked = r.json()
        r = await client.delete(f"/v1/admin/nodes/tokens/{revoked['id']}", headers=admin)
        assert r.status_code == 200 and r.json()["revoked"]
        code, out = await cli_join(gateway, node, revoked["token"])
        assert code == 1 and "revoked" in out

        code, out = await cli_join(gateway, node, token, "--name", "box", "--slots", "2")
        assert code == 0, out
        assert "Joined as node" in out and "of acme" in out and "demo" in out
        [joined] = nodes.list_nodes(engine)
        assert (joined.member, joined.name, joined.slots) == ("acme", "box", 2)

        r = await client.post("/v1/chat/completions", json=CHAT, headers=beta)
        assert r.status_code == 200, r.text  # offered at once
        code, out = await cli_join(gateway, node, token)
        assert code == 1 and "used already" in out
        r = await client.get("/v1/admin/nodes/tokens?member=acme", headers=admin)
        [listed] = r.json()["data"]
        assert listed["node_id"] == joined.id and listed["used"] and "token" not in listed

    [entry] = ledger.entries(engine)
    assert entry.node_id == joined.id
    log = AuditLog(engine)
    [record] = [r for r in log.records(limit=1000) if r.kind == "node.join"]
    assert record.member_id == members.find_member(engine, "acme").id
    assert record.data["node_id"] == joined.id and record.data["token"] == token[:12]
    assert token not in str([r.data for r in log.records(limit=1000)])
    assert log.verify().ok
    engine.dispose()
