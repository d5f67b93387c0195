"""A real gateway process killed with SIGKILL under load loses no acknowledged record."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest

from allmende.commons import db, keys, ledger, members
from allmende.commons.audit import AuditLog

from .conftest import start_serve

pytestmark = pytest.mark.process


@pytest.mark.parametrize("sync", ["full", "normal"])
async def test_sigkill_under_load_keeps_every_acknowledged_record(
    tmp_path: Path, db_url: str, sync: str
) -> None:
    engine = db.open_database(db_url)
    members.add_member(engine, "acme")
    key = keys.create_key(engine, "acme").secret
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "models:\n  - {id: demo, source: fake, options: {token_delay: 0.002, "
        'responses: ["one two three four five six seven eight"]}}\n'
    )
    proc, url = start_serve(
        ["--config", str(config)], tmp_path, db_url, env={"ALLMENDE_DATABASE_SYNC": sync}
    )
    acknowledged: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}

    async def client(i: int, c: httpx.AsyncClient) -> None:
        while True:
            try:
                if i % 2:
                    r = await c.post("/v1/chat/completions", json=body, headers=headers)
                    if r.status_code == 200:
                        acknowledged.append(r.json()["id"])
                    continue
                stream = {**body, "stream": True}
                async with c.stream(
                    "POST", "/v1/chat/completions", json=stream, headers=headers
                ) as r:
                    request_id, done = None, False
                    async for line in r.aiter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: {"):
                            request_id = json.loads(line[6:]).get("id", request_id)
                    if done and request_id:
                        acknowledged.append(request_id)
            except httpx.HTTPError:
                return  # the gateway is gone

    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            tasks = [asyncio.create_task(client(i, c)) for i in range(8)]
            await asyncio.sleep(2.0)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    assert len(acknowledged) > 20, "too little load to mean anything"
    recorded = {e.request_id for e in ledger.entries(engine, limit=100_000)}
    missing = [rid for rid in acknowledged if rid not in recorded]
    assert not missing, f"{len(missing)} acknowledged requests are not in the ledger"
    audit = AuditLog(engine)
    in_audit = {r.data["request_id"] for r in audit.records(limit=100_000)}
    assert {rid for rid in acknowledged} <= in_audit
    result = audit.verify()
    assert result.ok, result
    engine.dispose()
