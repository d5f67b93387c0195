"""A gateway and two real Allmende nodes (embedded SmolLM2) as separate processes on loopback.

One node is SIGKILLed under load: its streams end with a clean error event (never a hang), new
requests go to the survivor, and the ledger adds up (every request a client saw is in it, with
the node that served it and the token counts the client was told).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from allmende.commons import db, keys, ledger, members, nodes
from allmende.commons.audit import AuditLog

from .conftest import start_serve, stop_serve

pytestmark = pytest.mark.process

PROMPTS = ["Name a colour.", "Say hello.", "Count to five.", "Name a fruit.", "Describe rain."]


@dataclass
class Seen:
    """One request as its client saw it."""

    member: str
    started: float
    outcome: str = "hang"  # done | error-event | http-<status> | hang
    request_id: str | None = None
    completion_tokens: int | None = None


async def stream_once(c: httpx.AsyncClient, key: str, member: str, i: int) -> Seen:
    seen = Seen(member, time.monotonic())
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            seen.outcome = f"http-{r.status_code}"
            return seen
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                seen.outcome = "done"
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                seen.outcome = "error-event"
                break
            seen.request_id = chunk.get("id", seen.request_id)
            if chunk.get("usage"):
                seen.completion_tokens = chunk["usage"]["completion_tokens"]
    return seen


async def test_a_node_killed_under_load(tmp_path: Path, db_url: str) -> None:
    gw_dir = tmp_path / "gateway"
    database = db.open_database(db_url)
    members.add_member(database, "acme")
    members.add_member(database, "beta")
    secrets = {m: keys.create_key(database, m).secret for m in ("acme", "beta")}
    node_args = [
        "--no-default-models",
        "--model",
        "chat=smollm2",
        "--threads",
        "1",
        "--parallel",
        "4",
    ]
    procs: list[subprocess.Popen[str]] = []
    try:
        node_a, url_a = start_serve(node_args, tmp_path / "a")
        procs.append(node_a)
        node_b, url_b = start_serve(node_args, tmp_path / "b")
        procs.append(node_b)
        id_a = nodes.add_node(database, "acme", "a", url_a, slots=4).id
        id_b = nodes.add_node(database, "beta", "b", url_b, slots=4).id
        gateway, url = start_serve(
            ["--no-default-models", "--node-check-interval", "0.5"], gw_dir, db_url
        )
        procs.append(gateway)

        seen: list[Seen] = []
        stop_at = time.monotonic() + 1e9

        async def client(i: int, c: httpx.AsyncClient) -> None:
            member = ("acme", "beta")[i % 2]
            n = i
            while time.monotonic() < stop_at:
                seen.append(await asyncio.wait_for(stream_once(c, secrets[member], member, n), 60))
                n += 6

        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            listing = (
                await c.get("/v1/models", headers={"Authorization": f"Bearer {secrets['acme']}"})
            ).json()
            assert [(m["id"], m["nodes"]) for m in listing["data"]] == [("chat", 2)]
            tasks = [asyncio.create_task(client(i, c)) for i in range(6)]
            await asyncio.sleep(4.0)
            node_a.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.sleep(6.0)
            stop_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)
            metrics = (await c.get("/metrics")).text
    finally:
        for proc in procs:
            stop_serve(proc)

    outcomes = [s.outcome for s in seen]
    print({o: outcomes.count(o) for o in set(outcomes)}, "requests:", len(seen))
    assert "hang" not in outcomes
    assert not [o for o in outcomes if o.startswith("http-")], outcomes
    cut = [s for s in seen if s.outcome == "error-event"]
    assert cut, "the kill cut no stream: the test did not load node a"
    assert all(s.started < killed_at for s in cut), "a request after the kill failed"
    after = [s for s in seen if s.started > killed_at + 0.05]
    assert len(after) >= 6 and all(s.outcome == "done" for s in after)
    assert f'allmende_node_up{{node="{id_a}:a"}} 0.0' in metrics
    assert f'allmende_node_up{{node="{id_b}:b"}} 1.0' in metrics

    # The ledger adds up: one row per request the clients saw, with the node and the tokens.
    rows = {e.request_id: e for e in ledger.entries(database, limit=100_000)}
    assert len(rows) == len(seen)
    for s in seen:
        assert s.request_id in rows, s
        row = rows[s.request_id]
        if s.outcome == "done":
            assert row.status == 200 and row.completion_tokens == s.completion_tokens
        else:
            assert row.status == 502
    done_after = [rows[s.request_id] for s in after if s.request_id]
    assert {r.node_id for r in done_after} == {id_b}
    assert {r.node_id for r in rows.values() if r.status == 200} == {id_a, id_b}
    given = {c.member: (c.requests, c.tokens) for c in ledger.contribution(database)}
    for owner, node_id in (("acme", id_a), ("beta", id_b)):
        owner_id = members.find_member(database, owner).id
        for_others = [r for r in rows.values() if r.node_id == node_id and r.member_id != owner_id]
        tokens = sum(r.prompt_tokens + r.completion_tokens for r in for_others)
        assert given.get(owner, (0, 0)) == (len(for_others), tokens)
    assert given["beta"][0] > 0  # the survivor served acme's requests after the kill
    assert AuditLog(database).verify().ok
    database.dispose()


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


async def wait_for_children(
    pid: int,
    count: int,
    other_than: set[int] = frozenset(),
    timeout: float = 10.0,  # type: ignore[assignment]
) -> set[int]:
    for _ in range(int(timeout / 0.05)):
        found = children_of(pid)
        if len(found) == count and found != other_than:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pid} has children {children_of(pid)}, not {count} new ones")


async def test_workers_share_the_port_and_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    proc, url = start_serve(["--workers", "2", "--model", "demo=fake"], tmp_path)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
            workers = await wait_for_children(proc.pid, 2)
            os.kill(next(iter(workers)), signal.SIGKILL)
            now = await wait_for_children(proc.pid, 2, other_than=workers)
            assert len(now & workers) == 1  # one new worker, one old
            replies = [await c.post("/v1/chat/completions", json=body) for _ in range(20)]
            assert [r.status_code for r in replies] == [200] * 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not children_of(proc.pid)
    finally:
        stop_serve(proc)


async def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    proc, _ = start_serve(["--workers", "2", "--model", "demo=fake"], tmp_path)
    try:
        workers = await wait_for_children(proc.pid, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(200):
            alive = {w for w in workers if Path(f"/proc/{w}").exists()}
            if not alive:
                break
            await asyncio.sleep(0.05)
        assert not alive, "workers outlived their parent"
    finally:
        stop_serve(proc)


def test_workers_refuse_embedded_models(tmp_path: Path) -> None:
    env = {**os.environ, "ALLMENDE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "allmende", "serve", "--workers", "2", "--model", "smollm2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2 would load smollm2-135m-instruct once per process" in done.stderr
