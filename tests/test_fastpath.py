"""The generation routes' plain-ASGI path (`api.fastpath`) against FastAPI's own handling.

The two routes skip FastAPI's routing and body parsing, so their answers to bad bodies must be
the ones FastAPI would give: a reference FastAPI route with the same body model and the same
error handlers answers each body, and the real routes must answer alike."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from allmende.api import errors, fastpath
from allmende.protocol import ChatCompletionRequest, CompletionRequest

from .test_api import assert_envelope, chat

JSON = {"content-type": "application/json"}


@pytest.fixture
async def reference() -> AsyncIterator[httpx.AsyncClient]:
    """FastAPI parsing the same models, with Allmende's error handlers."""
    app = FastAPI()
    errors.install(app)

    @app.post("/v1/chat/completions")
    async def chat_route(body: ChatCompletionRequest) -> dict[str, Any]:
        return {"parsed": body.model}

    @app.post("/v1/completions")
    async def completion_route(body: CompletionRequest) -> dict[str, Any]:
        return {"parsed": body.model}

    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ref") as client:
        yield client


BAD_BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b"{not json", JSON),
    (b'{"model": "fake", "messages": [\xff\xfe]}', JSON),
    (b"[1, 2]", JSON),
    (b"", JSON),
    (b"null", JSON),
    (b'"a string"', JSON),
    (b"{}", JSON),
    (b'{"model": "fake"}', JSON),
    (b'{"model": "fake", "messages": []}', JSON),
    (b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "n": 0}', JSON),
    (b'{"model": "fake", "messages": [{"role": "user"}], "temperature": "hot"}', JSON),
    (b'{"model": "fake", "messages": "hello"}', JSON),
    (b'{"model": "fake", "prompt": 3, "max_tokens": -1}', JSON),
    (b'{"model": "fake", "messages": [{"role": "user", "content": "x"}]}', {}),
    (
        b'{"model": "fake", "messages": [{"role": "user", "content": "x"}]}',
        {"content-type": "text/plain"},
    ),
    (
        b'{"model": "fake", "messages": [{"role": "user", "content": "x"}]}',
        {"content-type": "application/vnd.x+json; charset=utf-8"},
    ),
    (b"{not json", {"content-type": "text/plain"}),
    (b"[" * 5000, JSON),  # nested past the parser's recursion limit
    (b'{"model": "fake", "prompt": "x", "seed": -9223372036854775809}', JSON),  # below int64
    (b'{"model": "fake", "prompt": "x", "temperature": NaN}', JSON),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize(("raw", "headers"), BAD_BODIES)
async def test_bodies_get_fastapis_answers(
    client: httpx.AsyncClient,
    reference: httpx.AsyncClient,
    path: str,
    raw: bytes,
    headers: dict[str, str],
) -> None:
    expected = await reference.post(path, content=raw, headers=headers)
    got = await client.post(path, content=raw, headers=headers)
    assert got.status_code == expected.status_code, got.text
    if expected.status_code >= 400:
        assert got.json() == expected.json()
        assert_envelope(got, expected.status_code)


async def test_other_methods_and_routes_go_to_fastapi(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/v1/completions"), 405)
    assert_envelope(await client.put("/v1/chat/completions", json=chat()), 405)
    assert_envelope(await client.post("/v1/chat/completion", json=chat()), 404)
    listed = await client.get("/v1/models")
    assert listed.status_code == 200 and listed.json()["data"][0]["id"] == "fake"
    # a body that FastAPI routes read after the fast path read it
    r = await client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert_envelope(r, 400)
    assert "embeddings" in r.json()["error"]["message"]


async def test_body_limit_covers_every_route(client: httpx.AsyncClient) -> None:
    big = b'{"model": "fake", "input": "' + b"x" * (10 << 20) + b'"}'
    assert_envelope(await client.post("/v1/embeddings", content=big), 413, "request_too_large")
    assert_envelope(await client.post("/v1/completions", content=big), 413, "request_too_large")
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_the_routes_stay_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/v1/chat/completions"]
    assert "post" in paths["/v1/completions"]


async def test_a_json_body_sent_as_other_content_is_told_so(client: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
    ):
        r = await client.post("/v1/chat/completions", content=json.dumps(chat()), headers=headers)
        error = assert_envelope(r, 400)
        assert "'Content-Type: application/json'" in error["message"]


def test_routes_match_under_a_root_path() -> None:
    """Behind `--root-path /api`, ASGI servers put the root path in front of `path`."""
    scope = {"path": "/api/v1/completions", "root_path": "/api"}
    assert fastpath._route_path(scope) in fastpath.ROUTES
    assert fastpath._route_path({"path": "/v1/completions", "root_path": ""}) in fastpath.ROUTES
    assert fastpath._route_path({"path": "/v1/completions"}) in fastpath.ROUTES
