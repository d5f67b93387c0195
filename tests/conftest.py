"""Shared fixtures: apps over the shipped fake engine, and the packaged real models."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI

from allmende.api import create_app
from allmende.config import ModelSpec, Settings
from allmende.engines import build_engine
from allmende.engines.base import Engine
from allmende.engines.fake import FakeEngine
from allmende.models.resolve import PACKAGED, resolve

from .databases import db_url, postgres_admin_url  # noqa: F401  (fixtures for every test)

# Keep every test's commons database (keys, ledger, audit) out of the user's data directory.
os.environ["ALLMENDE_DATA_DIR"] = tempfile.mkdtemp(prefix="allmende-test-")
os.environ.pop("ALLMENDE_DATABASE_URL", None)


def fake_engine(model_id: str = "fake", **options: object) -> FakeEngine:
    spec = ModelSpec(id=model_id, source="fake", options=dict(options))
    engine = build_engine(resolve(spec), spec, Settings())
    assert isinstance(engine, FakeEngine)
    return engine


async def wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(600):
        if (await client.get("/health")).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the app never became ready")


async def serve_app(
    engines: list[Engine], settings: Settings | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings or Settings(), engines)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await wait_ready(client)
            yield app, client


@asynccontextmanager
async def live_server(
    engines: list[Engine], settings: Settings | None = None
) -> AsyncIterator[str]:
    """A real uvicorn server on a loopback port, in this event loop; yields its base URL."""
    app = create_app(settings or Settings(), engines)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=url) as client:
            await wait_ready(client)
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def fake() -> FakeEngine:
    return fake_engine()


@pytest.fixture
async def client(fake: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async for _, c in serve_app([fake]):
        yield c


@pytest.fixture
async def sdk(client: httpx.AsyncClient) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK, talking to the in-process app."""
    async with openai.AsyncOpenAI(
        base_url="http://test/v1", api_key="unused", http_client=client, max_retries=0
    ) as sdk:
        yield sdk


def packaged(name: str) -> Path:
    path = PACKAGED[name].locate()
    assert path is not None, f"{name} is not installed: {PACKAGED[name].install}"
    return path


def start_serve(
    args: list[str],
    data_dir: Path,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """`allmende serve --port 0 ARGS` as a real process; returns it and its base URL once ready.
    Its commons database: `database_url`, else SQLite in `data_dir`; `env`: more variables."""
    env = {**os.environ, "ALLMENDE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
    if database_url is not None:
        env["ALLMENDE_DATABASE_URL"] = database_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "allmende", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Allmende ready: "):
            return proc, line.split()[2].removesuffix("/v1")
    proc.kill()
    proc.wait()
    raise AssertionError(f"allmende serve {' '.join(args)} did not start")


def stop_serve(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
