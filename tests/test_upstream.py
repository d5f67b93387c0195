"""The upstream engine against real Allmende servers on loopback (no mocks).

An upstream `allmende serve` subprocess serves SmolLM2 and MiniLM; a gateway Allmende (in-process
through ASGITransport, or a second subprocess where real streaming matters) fronts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from allmende.api import create_app
from allmende.config import ModelSpec, Settings
from allmende.engines import Engine, build_engine
from allmende.engines.upstream import UpstreamEngine
from allmende.errors import ConfigError
from allmende.models.resolve import resolve

pytestmark = [pytest.mark.process, pytest.mark.model]

READY = re.compile(r"Allmende ready: (http://\S+/v1)")
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0}
SLOW_REPLY = " ".join(f"w{i}" for i in range(30))  # 30 tokens, 0.3 s each: 9 s in all


class Server:
    """`python -m allmende serve --port 0 ARGS` as a subprocess; stderr goes to a log file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self.log: IO[bytes] = open(log_path, "wb")
        env = {**os.environ, "ALLMENDE_HUB_DOWNLOAD": "false", "PYTHONUNBUFFERED": "1"}
        env.pop("ALLMENDE_LOAD_PLUGINS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "allmende", "serve", "--port", "0", "--log-level", "warning"]
            + args,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float = 120) -> str:
        """The server's /v1 URL, once it says it is ready."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if match := READY.search(line):
                self.url = match[1]
                return self.url
        self.log.flush()
        pytest.fail(
            "server did not become ready:\n" + "".join(seen) + self.log_path.read_text("utf-8")
        )

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill()
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SmolLM2 (as 'smol', 256-token context) and MiniLM behind a real upstream server."""
    log = tmp_path_factory.mktemp("upstream") / "server.log"
    args = ["-m", "smol=smollm2", "-m", "minilm", "--context-length", "256", "--threads", "1"]
    server = Server(args, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _engine(model_id: str, url: str, **options: Any) -> Engine:
    spec = ModelSpec(id=model_id, source=url, options=options)
    return build_engine(resolve(spec), spec, Settings())


@asynccontextmanager
async def serving(engines: list[Engine]) -> AsyncIterator[FastAPI]:
    """A gateway app over `engines`, running its lifespan, once /health says ready."""
    app = create_app(Settings(), engines)
    async with app.router.lifespan_context(app):
        async with _client(app) as client:
            for _ in range(200):
                if (await client.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the gateway did not become ready")
        yield app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")


@pytest.fixture
async def gateway_app(upstream: Server) -> AsyncIterator[FastAPI]:
    engines = [
        _engine("chat", upstream.url, upstream_model="smol"),
        _engine("embed", upstream.url, upstream_model="all-minilm-l6-v2"),
    ]
    async with serving(engines) as app:
        yield app


@pytest.fixture
async def gateway(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(gateway_app) as client:
        yield client


def _events(text: str) -> list[str]:
    """The data payloads of an SSE body."""
    return [b.removeprefix("data: ") for b in text.split("\n\n") if b.startswith("data: ")]


def _metric(text: str, name: str, model: str) -> float:
    match = re.search(rf'^{name}\{{model="{model}"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model} not in metrics"
    return float(match[1])


async def test_chat_passes_through(gateway: httpx.AsyncClient, upstream: Server) -> None:
    response = await gateway.post("/v1/chat/completions", json={"model": "chat", **CHAT})
    assert response.status_code == 200, response.text
    body = response.json()
    async with httpx.AsyncClient(timeout=60) as client:  # the same request, straight upstream
        direct = await client.post(
            upstream.url + "/chat/completions", json={"model": "smol", **CHAT}
        )
    assert body["choices"][0]["message"] == direct.json()["choices"][0]["message"]
    assert body["usage"] == direct.json()["usage"]
    assert body["model"] == "chat"
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    metrics = (await gateway.get("/metrics")).text
    assert _metric(metrics, "allmende_completion_tokens_total", "chat") > 0


async def test_stream_chat(gateway: httpx.AsyncClient) -> None:
    request = {"model": "chat", **CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await gateway.post("/v1/chat/completions", json=request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "chat" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks)
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


async def test_completions(gateway: httpx.AsyncClient) -> None:
    request = {"model": "chat", "prompt": "The capital of France is", "max_tokens": 8}
    response = await gateway.post("/v1/completions", json={**request, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["model"] == "chat"
    assert body["choices"][0]["text"]
    assert body["usage"]["completion_tokens"] > 0
    response = await gateway.post("/v1/completions", json={**request, "stream": True})
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])


async def test_embeddings(gateway: httpx.AsyncClient, upstream: Server) -> None:
    texts = ["hello world", "a cat sat on the mat"]
    response = await gateway.post("/v1/embeddings", json={"model": "embed", "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "embed"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 384 for d in body["data"])
    assert body["usage"]["prompt_tokens"] > 0
    async with httpx.AsyncClient() as direct:
        ref = await direct.post(
            upstream.url + "/embeddings", json={"model": "all-minilm-l6-v2", "input": texts}
        )
    assert [d["embedding"] for d in body["data"]] == [d["embedding"] for d in ref.json()["data"]]


async def test_upstream_400_passes_through(gateway: httpx.AsyncClient) -> None:
    long = {"role": "user", "content": "word " * 400}  # over the upstream's 256-token context
    request = {"model": "chat", "messages": [long], "max_tokens": 8}
    response = await gateway.post("/v1/chat/completions", json=request)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "256" in error["message"]
    response = await gateway.post("/v1/chat/completions", json={"model": "chat", **CHAT})
    assert response.status_code == 200


async def test_discovery(upstream: Server) -> None:
    found = _engine("smol", upstream.root)  # without /v1; listed upstream under the same id
    assert isinstance(found, UpstreamEngine)
    await found.start()
    try:
        card = found.card()
        assert card.context_length == 256
        assert card.engine == "upstream" and card.source == upstream.url
    finally:
        await found.aclose()
    ambiguous = _engine("gateway", upstream.url + "/")  # not listed, and upstream serves two
    with pytest.raises(ConfigError) as info:
        await ambiguous.start()
    await ambiguous.aclose()
    assert "smol" in info.value.message and "all-minilm-l6-v2" in info.value.message
    assert "upstream_model" in info.value.message


async def test_missing_api_key_env(upstream: Server) -> None:
    engine = _engine("smol", upstream.url, api_key_env="ALLMENDE_TEST_UNSET_KEY")
    with pytest.raises(ConfigError, match="ALLMENDE_TEST_UNSET_KEY"):
        await engine.start()
    await engine.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_upstream() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    async with serving([_engine("gone", url)]) as app, _client(app) as client:
        for _ in range(2):
            response = await client.post("/v1/chat/completions", json={"model": "gone", **CHAT})
            assert response.status_code == 502
            error = response.json()["error"]
            assert error["code"] == "upstream_error" and "unreachable" in error["message"]
            assert response.headers["retry-after"] == "2"
        response = await client.post("/v1/embeddings", json={"model": "gone", "input": "x"})
        assert response.status_code == 502
        assert (await client.get("/health")).status_code == 200
        models = (await client.get("/v1/models")).json()["data"]
        assert [m["id"] for m in models] == ["gone"]


async def test_openai_sdk(gateway_app: FastAPI) -> None:
    async with (
        _client(gateway_app) as http,
        openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="x", http_client=http) as client,
    ):
        reply = await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
        )
        assert reply.model == "chat"
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        stream = await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces)


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """A slow fake upstream, and a gateway subprocess in front of it (real streaming)."""
    config = tmp_path / "slow.yaml"
    options = {"token_delay": 0.3, "responses": [SLOW_REPLY]}
    model = {"id": "slow", "source": "fake", "options": options}
    config.write_text(json.dumps({"models": [model]}), encoding="utf-8")  # JSON is YAML
    up = Server(["--config", str(config)], tmp_path / "upstream.log")
    servers = [up]
    try:
        up.wait_ready()
        gateway = Server(["--model", f"slow={up.url}"], tmp_path / "gateway.log")
        servers.append(gateway)
        gateway.wait_ready()
        yield up, gateway
    finally:
        for server in servers:
            server.stop()


async def _in_flight(client: httpx.AsyncClient, server: Server) -> float:
    text = (await client.get(server.root + "/metrics")).text
    return _metric(text, "allmende_requests_in_flight", "slow")


async def test_upstream_dies_mid_stream(slow: tuple[Server, Server]) -> None:
    up, gateway = slow
    request = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    data: list[str] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", gateway.url + "/chat/completions", json=request) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            while len(data) < 2:
                line = await anext(lines)
                if line.startswith("data: "):
                    data.append(line)
            killed = time.monotonic()
            up.kill()
            async for line in lines:
                if line.startswith("data: "):
                    data.append(line)
        assert time.monotonic() - killed < 10
        assert data[-1] != "data: [DONE]"
        error = json.loads(data[-1].removeprefix("data: "))["error"]
        assert error["code"] == "upstream_error"
        assert "closed the stream early" in error["message"]
        assert all("error" not in json.loads(d[6:]) for d in data[:-1])
        response = await client.post(
            gateway.url + "/chat/completions", json={**request, "stream": False}
        )
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"
        assert (await client.get(gateway.root + "/health")).status_code == 200


async def test_cancel_stops_upstream(slow: tuple[Server, Server]) -> None:
    up, gateway = slow
    request = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", gateway.url + "/chat/completions", json=request) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            while not (await anext(lines)).startswith("data: "):
                pass
            assert await _in_flight(client, up) == 1
        closed = time.monotonic()  # the client went away, 8 s before the reply would end
        while await _in_flight(client, up) != 0:
            assert time.monotonic() - closed < 5, "the upstream kept generating"
            await asyncio.sleep(0.1)
        while await _in_flight(client, gateway) != 0:
            assert time.monotonic() - closed < 5, "the gateway kept the request"
            await asyncio.sleep(0.1)
