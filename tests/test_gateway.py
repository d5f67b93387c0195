"""The gateway with contributed nodes: real node servers on loopback (fake engines), in-process
gateway. Discovery, policy, routing, retry before the first token, down and up, ledger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import openai
import pytest

from allmende.commons import db, keys, ledger, members, nodes
from allmende.config import Settings
from allmende.engines.fake import FakeEngine
from allmende.errors import EngineError
from allmende.openness.policy import OpennessPolicy

from .conftest import fake_engine, live_server, serve_app

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


class Commons:
    """The gateway's database (each test runs on SQLite and on PostgreSQL) and its settings."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path, self.url = tmp_path, url

    def engine(self) -> db.Engine:
        return db.open_database(self.url)

    def settings(self, **extra: object) -> Settings:
        return Settings(
            data_dir=str(self.tmp_path / "gateway"),
            database_url=self.url,
            default_models=False,
            node_check_interval=0.2,
            node_timeout=1.0,
            **extra,  # type: ignore[arg-type]
        )


@pytest.fixture
def gw(tmp_path: Path, db_url: str) -> Commons:
    return Commons(tmp_path, db_url)


async def start_node(stack: AsyncExitStack, tmp_path: Path, name: str, engine: FakeEngine) -> str:
    settings = Settings(data_dir=str(tmp_path / name))
    return await stack.enter_async_context(live_server([engine], settings))


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    body = (await client.get("/v1/models")).json()
    return {m["id"]: m for m in body["data"]}


async def until(
    client: httpx.AsyncClient,
    check: Callable[[dict[str, dict[str, object]]], bool],
    timeout: float = 5.0,
) -> None:
    """Wait until `check` holds for the gateway's model listing."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(await listed(client)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def keep_asking(client: httpx.AsyncClient, key: str, until_t: float) -> int:
    """Ask one request after another until `until_t`; how many were answered."""
    done = 0
    while asyncio.get_running_loop().time() < until_t:
        headers = {"Authorization": f"Bearer {key}"}
        r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert r.status_code == 200, r.text
        done += 1
    return done


class Pool:
    """Two fake nodes ('a' of member acme, 'b' of member beta) and a gateway over them."""

    def __init__(self, a: FakeEngine, b: FakeEngine, client: httpx.AsyncClient) -> None:
        self.a, self.b, self.client = a, b, client


@pytest.fixture
async def pool(tmp_path: Path, gw: Commons) -> AsyncIterator[Pool]:
    a = fake_engine("demo", responses=["from a"])
    b = fake_engine("demo", responses=["from b"])
    async with AsyncExitStack() as stack:
        url_a = await start_node(stack, tmp_path, "a", a)
        url_b = await start_node(stack, tmp_path, "b", b)
        engine = gw.engine()
        members.add_member(engine, "acme")
        members.add_member(engine, "beta")
        nodes.add_node(engine, "acme", "a", url_a, slots=2)
        nodes.add_node(engine, "beta", "b", url_b + "/v1", slots=2)
        engine.dispose()
        async for _, client in serve_app([], gw.settings()):
            yield Pool(a, b, client)


async def test_models_of_the_nodes_are_discovered_and_listed(pool: Pool) -> None:
    models = await listed(pool.client)
    assert list(models) == ["demo"]
    assert models["demo"]["engine"] == "pool"
    assert models["demo"]["nodes"] == 2
    assert models["demo"]["owned_by"] == "acme, beta"


async def test_requests_spread_over_the_nodes(pool: Pool) -> None:
    pool.a.options.token_delay = pool.b.options.token_delay = 0.02
    replies = await asyncio.gather(
        *(pool.client.post("/v1/chat/completions", json=CHAT) for _ in range(4))
    )
    texts = sorted(r.json()["choices"][0]["message"]["content"] for r in replies)
    assert texts == ["from a", "from a", "from b", "from b"]  # least outstanding: 2 and 2


async def test_streaming_and_the_sdk_through_the_gateway(pool: Pool) -> None:
    async with openai.AsyncOpenAI(
        base_url="http://test/v1", api_key="x", http_client=pool.client, max_retries=0
    ) as sdk:
        stream = await sdk.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
    assert text in ("from a", "from b")
    assert usage is not None and usage.completion_tokens == 2


async def test_a_failure_before_the_first_token_is_retried_on_the_other_node(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    pool.a.enqueue(EngineError("node a broke"))
    # Requests until node a has had one (it fails there before its first token and is retried
    # on node b): the clients see only good answers.
    replies = []
    while not pool.a.calls:
        replies.append(await pool.client.post("/v1/chat/completions", json=CHAT))
        assert len(replies) <= 4
    assert [r.status_code for r in replies] == [200] * len(replies), replies[-1].text
    assert replies[-1].json()["choices"][0]["message"]["content"] == "from b"
    # The failed node was marked down at once (a 500 is the node's fault) ...
    assert "Node 1 (" in caplog.text and "is down: The upstream server failed" in caplog.text
    # ... and is back up at the next health check.
    await until(pool.client, lambda models: models["demo"]["nodes"] == 2)
    r = await pool.client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200


async def test_client_errors_are_not_retried(pool: Pool) -> None:
    bad = {**CHAT, "max_tokens": -1}
    r = await pool.client.post("/v1/chat/completions", json=bad)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    calls = len(pool.a.calls) + len(pool.b.calls)
    assert calls == 0


async def test_down_node_gets_no_requests_and_comes_back(tmp_path: Path, gw: Commons) -> None:
    a = fake_engine("demo", responses=["from a"])
    b = fake_engine("demo", responses=["from b"])
    engine = gw.engine()
    members.add_member(engine, "acme")
    async with AsyncExitStack() as outer:
        url_b = await start_node(outer, tmp_path, "b", b)
        inner = AsyncExitStack()
        url_a = await start_node(inner, tmp_path, "a", a)
        nodes.add_node(engine, "acme", "a", url_a)
        nodes.add_node(engine, "acme", "b", url_b)
        async for _, client in serve_app([], gw.settings()):
            await inner.aclose()  # node a stops
            replies = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(4)]
            assert [r.status_code for r in replies] == [200] * 4
            assert {r.json()["choices"][0]["message"]["content"] for r in replies} == {"from b"}

            await until(client, lambda models: models["demo"]["nodes"] == 1)
            # Node b goes too: the model stays known, requests get 503 with Retry-After.
            await outer.aclose()

            await until(client, lambda models: "demo" not in models)
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["type"] in ("overloaded_error", "server_error", "api_error")
            assert "retry-after" in r.headers
    engine.dispose()


async def test_nodes_added_while_running_are_picked_up(tmp_path: Path, gw: Commons) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    async with AsyncExitStack() as stack:
        url = await start_node(stack, tmp_path, "a", fake_engine("late", responses=["late"]))
        async for _, client in serve_app([], gw.settings()):
            assert await listed(client) == {}
            r = await client.post("/v1/chat/completions", json={**CHAT, "model": "late"})
            assert r.status_code == 404
            nodes.add_node(engine, "acme", None, url)

            await until(client, lambda models: "late" in models)
            r = await client.post("/v1/chat/completions", json={**CHAT, "model": "late"})
            assert r.json()["choices"][0]["message"]["content"] == "late"
    engine.dispose()


async def test_the_openness_policy_filters_node_models(tmp_path: Path, gw: Commons) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    policy = OpennessPolicy(min_mof_class="III", allow_models=["allowed"])
    async with AsyncExitStack() as stack:
        for name in ("allowed", "unknown-model"):
            url = await start_node(stack, tmp_path, name, fake_engine(name))
            nodes.add_node(engine, "acme", name, url)
        settings = gw.settings(openness_policy=policy)
        async for _, client in serve_app([], settings):
            assert list(await listed(client)) == ["allowed"]
            r = await client.post("/v1/chat/completions", json={**CHAT, "model": "unknown-model"})
            assert r.status_code == 404
    engine.dispose()


async def test_a_local_model_wins_over_a_node_model_of_the_same_id(
    tmp_path: Path, gw: Commons
) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    async with AsyncExitStack() as stack:
        url = await start_node(stack, tmp_path, "a", fake_engine("demo", responses=["node"]))
        nodes.add_node(engine, "acme", None, url)
        local = fake_engine("demo", responses=["local"])
        async for _, client in serve_app([local], gw.settings()):
            models = await listed(client)
            assert models["demo"]["engine"] == "fake"
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.json()["choices"][0]["message"]["content"] == "local"
    engine.dispose()


async def test_the_ledger_names_the_node_and_counts_contribution(
    tmp_path: Path, gw: Commons
) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    members.add_member(engine, "beta")
    acme_key = keys.create_key(engine, "acme").secret
    async with AsyncExitStack() as stack:
        url = await start_node(stack, tmp_path, "b", fake_engine("demo", responses=["x y z"]))
        node = nodes.add_node(engine, "beta", "b", url)
        async for _, client in serve_app([], gw.settings()):
            headers = {"Authorization": f"Bearer {acme_key}"}
            r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 200, r.text
            body = {**CHAT, "stream": True}
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as s:
                lines = [line async for line in s.aiter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            assert json.loads(lines[0][6:])["model"] == "demo"
    rows = ledger.entries(engine)
    assert len(rows) == 2
    assert {row.node_id for row in rows} == {node.id}
    given = ledger.contribution(engine)
    assert [(c.member, c.requests) for c in given] == [("beta", 2)]
    assert given[0].tokens == sum(r.prompt_tokens + r.completion_tokens for r in rows) > 0
    engine.dispose()


async def test_admin_node_listing_shows_what_the_gateway_sees(tmp_path: Path, gw: Commons) -> None:
    engine = gw.engine()
    members.add_member(engine, "ops")
    admin = keys.create_key(engine, "ops", scope="admin").secret
    async with AsyncExitStack() as stack:
        url = await start_node(stack, tmp_path, "a", fake_engine("demo"))
        up = nodes.add_node(engine, "ops", "a", url)
        down = nodes.add_node(engine, "ops", "gone", "http://127.0.0.1:9")  # nothing listens
        async for _, client in serve_app([], gw.settings()):
            headers = {"Authorization": f"Bearer {admin}"}
            r = await client.get("/v1/admin/nodes", headers=headers)
            assert r.status_code == 200, r.text
            rows = {row["id"]: row for row in r.json()["data"]}
            assert rows[up.id]["status"] == "up" and rows[up.id]["models"] == ["demo"]
            assert rows[down.id]["status"] == "down" and rows[down.id]["error"]
            assert "api_key" not in rows[up.id]
    engine.dispose()


async def test_fair_share_serves_the_contributor_first_under_contention(
    tmp_path: Path, gw: Commons
) -> None:
    engine = gw.engine()
    alpha, beta = members.add_member(engine, "alpha"), members.add_member(engine, "beta")
    secrets = {m: keys.create_key(engine, m).secret for m in ("alpha", "beta")}
    slow = fake_engine("demo", responses=["one two three"], token_delay=0.01)
    async with AsyncExitStack() as stack:
        url = await start_node(stack, tmp_path, "a", slow)
        node = nodes.add_node(engine, "alpha", "a", url, slots=1)
        # alpha's node served beta before: alpha's weight is 1.1, beta's the floor, 0.1.
        ledger.record(
            engine,
            ledger.LedgerEntry(
                member_id=beta.id,
                model="demo",
                prompt_tokens=500,
                completion_tokens=500,
                latency_ms=1,
                status=200,
                node_id=node.id,
            ),
        )
        async for _, client in serve_app([], gw.settings()):
            until_t = asyncio.get_running_loop().time() + 2.0
            # Three clients each, one slot: both members are backlogged the whole time.
            counts = await asyncio.gather(
                *(keep_asking(client, secrets[m], until_t) for m in ("alpha", "beta") * 3)
            )
    served = {"alpha": sum(counts[0::2]), "beta": sum(counts[1::2])}
    assert alpha.id != beta.id
    # Equal requests; weights 1.1 : 0.1. FIFO would serve them about 1 : 1.
    assert served["alpha"] + served["beta"] >= 20
    assert served["alpha"] >= 4 * served["beta"], served
    engine.dispose()


async def test_a_slow_non_streamed_answer_times_out_without_marking_nodes_down(
    tmp_path: Path, gw: Commons
) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    # Four tokens, 0.3 s apart: a stream never goes 0.8 s without data; a whole answer takes 1.2 s.
    a = fake_engine("demo", responses=["one two three four"], token_delay=0.3)
    b = fake_engine("demo", responses=["one two three four"], token_delay=0.3)
    async with AsyncExitStack() as stack:
        nodes.add_node(engine, "acme", "a", await start_node(stack, tmp_path, "a", a))
        nodes.add_node(engine, "acme", "b", await start_node(stack, tmp_path, "b", b))
        engine.dispose()
        async for _, client in serve_app([], gw.settings(upstream_timeout=0.8)):
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "upstream_timeout"
            assert len(a.calls) + len(b.calls) == 1  # not tried again on the other node
            assert (await listed(client))["demo"]["nodes"] == 2  # both still up
            body = {**CHAT, "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body) as s:
                lines = [line async for line in s.aiter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines)


async def test_a_node_that_leads_back_to_its_gateway_is_a_detected_loop(
    tmp_path: Path, gw: Commons
) -> None:
    engine = gw.engine()
    members.add_member(engine, "acme")
    admin = keys.create_key(engine, "acme", scope="admin").secret
    async with AsyncExitStack() as stack:
        real = await start_node(stack, tmp_path, "a", fake_engine("demo", responses=["ok"]))
        nodes.add_node(engine, "acme", "real", real)
        gateway = await stack.enter_async_context(live_server([], gw.settings()))
        loop = nodes.add_node(engine, "acme", "itself", gateway)  # registered by mistake
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=gateway, timeout=10, headers=headers) as client:
            await until(client, lambda m: "demo" in m)
            for _ in range(4):  # whichever node is picked, the answer comes from the real one
                r = await client.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "ok"
            # The health check of itself hears 508 and marks the node down.
            await asyncio.sleep(0.5)
            r = await client.get("/v1/admin/nodes")
            assert r.status_code == 200, r.text
            row = {n["id"]: n for n in r.json()["data"]}[loop.id]
            assert row["status"] == "down" and "508" in row["error"]
    engine.dispose()


async def test_allmende_via_names_the_servers_a_request_passed(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), default_models=False)
    async for app, client in serve_app([fake_engine("demo")], settings):
        me = app.state.instance
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/embeddings", None)):
            headers = {"Allmende-Via": f"other,{me}"}
            r = await client.post(
                path, json=body or {"model": "demo", "input": "x"}, headers=headers
            )
            assert r.status_code == 508, r.text
            assert r.json()["error"]["code"] == "loop_detected"
        assert (await client.get("/v1/models", headers={"Allmende-Via": me})).status_code == 508
        too_many = ",".join(f"s{i}" for i in range(16))
        r = await client.get("/v1/models", headers={"Allmende-Via": too_many})
        assert r.status_code == 400
        r = await client.post("/v1/chat/completions", json=CHAT, headers={"Allmende-Via": "a,b"})
        assert r.status_code == 200
