"""HTTP behaviour of the OpenAI-compatible API, in-process, over the fake engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from allmende.engines.fake import FakeEngine
from allmende.errors import EngineError, OverloadedError

from .conftest import fake_engine, live_server, serve_app

USER = [{"role": "user", "content": "Hello there"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": USER, **extra}


def events(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def assert_envelope(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


async def test_chat_completion_shape(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("Hi, nice to meet you.")
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake"
    assert body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hi, nice to meet you.",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5
    prompt, _ = fake.calls[-1]
    assert "<|im_start|>user\nHello there<|im_end|>" in prompt


async def test_content_parts_and_roles_reach_the_prompt(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Part one, "},
                {"type": "text", "text": "part two."},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    r = await client.post("/v1/chat/completions", json={"model": "fake", "messages": messages})
    assert r.status_code == 200
    prompt, _ = fake.calls[-1]
    assert "<|im_start|>system\nBe brief." in prompt
    assert "Part one, part two." in prompt
    assert '<tool_call>{"name": "f", "arguments": {}}</tool_call>' in prompt
    assert "<|im_start|>tool\n42" in prompt


async def test_max_tokens_gives_length(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("one two three four five")
    r = await client.post("/v1/chat/completions", json=chat(max_completion_tokens=2))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == "one two"
    assert choice["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("three", "one two "), (["zzz", "o t"], "one tw"), (["four", "two"], "one ")],
)
async def test_stop_sequences(
    client: httpx.AsyncClient, fake: FakeEngine, stop: Any, expected: str
) -> None:
    fake.enqueue("one two three four five")
    r = await client.post("/v1/chat/completions", json=chat(stop=stop))
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == expected
    assert choice["finish_reason"] == "stop"


async def test_stop_sequence_split_across_tokens_in_stream(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    fake.enqueue("alpha be ta gamma")
    r = await client.post("/v1/chat/completions", json=chat(stream=True, stop="beta"))
    got = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events(r.text)[:-1] if e["choices"]
    )
    assert got == "alpha be ta gamma"  # 'be ta' is not 'beta'
    fake.enqueue("alpha bet a")
    r = await client.post("/v1/chat/completions", json=chat(stream=True, stop="bet"))
    got = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events(r.text)[:-1] if e["choices"]
    )
    assert got == "alpha "


async def test_n_choices(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("first", "second")
    r = await client.post("/v1/chat/completions", json=chat(n=2, seed=7))
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert [c["message"]["content"] for c in choices] == ["first", "second"]
    assert [p.seed for _, p in fake.calls[-2:]] == [7, 8]


async def test_sampling_parameters_reach_the_engine(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    await client.post(
        "/v1/chat/completions",
        json=chat(temperature=0.3, top_p=0.5, seed=11, presence_penalty=0.5, frequency_penalty=-1),
    )
    _, params = fake.calls[-1]
    assert (params.temperature, params.top_p, params.seed) == (0.3, 0.5, 11)
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -1)


async def test_stream_chunks_and_usage(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("a b c")
    r = await client.post(
        "/v1/chat/completions",
        json=chat(stream=True, stream_options={"include_usage": True}),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    assert evs[-1] == "[DONE]"
    chunks = evs[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a b c"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_stream_without_usage_has_no_usage_key(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(stream=True))
    chunks = events(r.text)[:-1]
    assert all("usage" not in c for c in chunks)


async def test_completions(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("world", "there")
    r = await client.post(
        "/v1/completions", json={"model": "fake", "prompt": ["Hello", "Hi"], "max_tokens": 5}
    )
    body = r.json()
    assert body["object"] == "text_completion"
    assert [c["text"] for c in body["choices"]] == ["world", "there"]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 2
    assert fake.calls[-1][0] == "Hi"


async def test_completions_stream(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue("x y")
    r = await client.post("/v1/completions", json={"model": "fake", "prompt": "p", "stream": True})
    evs = events(r.text)
    assert evs[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in evs[:-1]) == "x y"
    assert evs[-2]["choices"][0]["finish_reason"] == "stop"


async def test_tools_auto_detects_call(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    fake.enqueue('<tool_call>{"name": "weather", "arguments": {"city": "Bern"}}</tool_call>')
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    r = await client.post("/v1/chat/completions", json=chat(tools=tools))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Bern"}
    assert call["id"].startswith("call_")
    prompt, params = fake.calls[-1]
    assert "Weather for a city" in prompt
    assert params.json_schema is None  # auto: not constrained


async def test_tools_auto_prose_streams_as_text(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    fake.enqueue("It is sunny today.")
    tools = [{"type": "function", "function": {"name": "weather"}}]
    r = await client.post("/v1/chat/completions", json=chat(tools=tools, stream=True))
    chunks = events(r.text)[:-1]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "It is sunny today."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_named_tool_choice_constrains_output(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    fake.enqueue('{"name": "add", "arguments": {"a": 1, "b": 2}}')
    params_schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }
    tools = [
        {"type": "function", "function": {"name": "add", "parameters": params_schema}},
        {"type": "function", "function": {"name": "other"}},
    ]
    choice = {"type": "function", "function": {"name": "add"}}
    r = await client.post(
        "/v1/chat/completions", json=chat(tools=tools, tool_choice=choice, stream=True)
    )
    chunks = events(r.text)[:-1]
    [call] = chunks[-1]["choices"][0]["delta"]["tool_calls"]
    assert call["function"]["name"] == "add"
    assert json.loads(call["function"]["arguments"]) == {"a": 1, "b": 2}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    _, params = fake.calls[-1]
    assert params.json_schema is not None
    assert params.json_schema["properties"]["name"] == {"const": "add"}
    assert params.json_schema["properties"]["arguments"] == params_schema


async def test_tool_choice_none_ignores_tools(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    tools = [{"type": "function", "function": {"name": "weather"}}]
    await client.post("/v1/chat/completions", json=chat(tools=tools, tool_choice="none"))
    prompt, params = fake.calls[-1]
    assert "weather" not in prompt and params.json_schema is None


async def test_response_format_json_schema(client: httpx.AsyncClient, fake: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    await client.post("/v1/chat/completions", json=chat(response_format=fmt))
    assert fake.calls[-1][1].json_schema == schema
    await client.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"}))
    assert fake.calls[-1][1].json_schema == {"type": "object"}


async def test_models_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.json()["object"] == "list"
    [model] = r.json()["data"]
    assert model["id"] == "fake" and model["object"] == "model"
    assert model["capabilities"]["chat"] is True
    r = await client.get("/v1/models/fake")
    assert r.json()["id"] == "fake"
    assert_envelope(await client.get("/v1/models/nope"), 404, "model_not_found")


async def test_health_waits_for_models() -> None:
    slow = fake_engine(load_delay=0.3)
    from allmende.api import create_app
    from allmende.config import Settings

    app = create_app(Settings(), [slow])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "loading"
            busy = await c.post("/v1/chat/completions", json=chat())
            assert_envelope(busy, 503, "server_overloaded")
            assert busy.headers["retry-after"] == "2"
            await asyncio.sleep(0.5)
            assert (await c.get("/health")).json()["status"] == "ok"


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=chat())
    await client.post("/v1/chat/completions", json=chat(model="nope"))
    text = (await client.get("/metrics")).text
    assert (
        'allmende_requests_total{endpoint="/v1/chat/completions",model="fake",status="200"} 1.0'
        in text
    )
    assert 'allmende_completion_tokens_total{model="fake"}' in text
    assert 'allmende_request_duration_seconds_bucket{endpoint="/v1/chat/completions"' in text
    assert 'allmende_time_to_first_token_seconds_count{model="fake"} 1.0' in text
    assert 'allmende_queue_depth{model="fake"} 0.0' in text


async def test_openapi_document(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert "/v1/chat/completions" in doc["paths"]
    assert "ChatCompletionRequest" in doc["components"]["schemas"]


# -- bad input never kills the server ------------------------------------------------------------


async def test_unknown_fields_are_tolerated_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="allmende.api")
    r = await client.post("/v1/chat/completions", json=chat(my_custom_flag=True))
    assert r.status_code == 200
    assert "my_custom_flag" in caplog.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(messages=[]), "messages"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "user"}]), "messages[0]"),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0]"),
        (chat(max_tokens=-5), "max_tokens"),
        (chat(max_completion_tokens=0), "max_completion_tokens"),
        (chat(temperature=3), "temperature"),
        (chat(top_p=0), "top_p"),
        (chat(n=0), "n"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(logprobs=True), "logprobs"),
        (chat(logit_bias={"1": 5}), "logit_bias"),
        ({"messages": USER}, "model"),
        (chat(tool_choice="required"), "tool_choice"),
        (
            chat(
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            ),
            None,
        ),
        (
            chat(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": 5}},
                }
            ),
            "response_format.json_schema.schema",
        ),
        (
            chat(
                tools=[
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}
                ]
            ),
            "tools[0].function.parameters",
        ),
        (
            chat(
                tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "function", "function": {"name": "g"}},
            ),
            "tool_choice",
        ),
    ],
)
async def test_bad_requests_get_400_with_param(
    client: httpx.AsyncClient, body: dict[str, Any], param: str | None
) -> None:
    error = assert_envelope(await client.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_image_parts_are_refused(client: httpx.AsyncClient) -> None:
    body = chat(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    )
    error = assert_envelope(await client.post("/v1/chat/completions", json=body), 400)
    assert "image_url" in error["message"] or "text" in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"model": "fake", "messages": [\xff\xfe]}', b"[1, 2]", b"", b"null"],
)
async def test_malformed_bodies(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert_envelope(r, 400)


async def test_huge_body_is_refused(client: httpx.AsyncClient) -> None:
    big = (
        b'{"model": "fake", "messages": [{"role": "user", "content": "'
        + b"x" * (10 << 20)
        + b'"}]}'
    )
    assert_envelope(
        await client.post("/v1/chat/completions", content=big), 413, "request_too_large"
    )

    async def chunks() -> Any:
        for _ in range(11):
            yield b"x" * (1 << 20)

    r = await client.post("/v1/chat/completions", content=chunks())  # no Content-Length
    assert_envelope(r, 413, "request_too_large")
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_context_length_exceeded() -> None:
    small = fake_engine(context_length=16)
    async for _, c in serve_app([small]):
        body = chat(messages=[{"role": "user", "content": "word " * 40}])
        error = assert_envelope(await c.post("/v1/chat/completions", json=body), 400)
        assert error["code"] == "context_length_exceeded"
        body["stream"] = True
        r = await c.post("/v1/chat/completions", json=body)
        assert_envelope(r, 400, "context_length_exceeded")
        r = await c.post("/v1/completions", json={"model": "fake", "prompt": "w " * 40})
        assert_envelope(r, 400, "context_length_exceeded")


async def test_engine_failure_is_500_without_internals(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    fake.enqueue(RuntimeError("secret internal detail /home/x"))
    error = assert_envelope(await client.post("/v1/chat/completions", json=chat()), 500)
    assert "secret" not in error["message"] and error["type"] == "server_error"
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_engine_failure_mid_stream_ends_with_error_event() -> None:
    class Failing(FakeEngine):
        async def generate(self, prompt: Any, params: Any) -> Any:
            yield "partial "
            raise EngineError("The model failed while generating.")

    engine = Failing("fake", "", FakeEngine.Options())
    async for _, c in serve_app([engine]):
        r = await c.post("/v1/chat/completions", json=chat(stream=True))
        evs = events(r.text)
        assert evs[0]["choices"][0]["delta"]["content"] == "partial "
        assert evs[-1]["error"]["type"] == "server_error"
        assert "[DONE]" not in evs


async def test_overload_is_503_with_retry_after(
    client: httpx.AsyncClient, fake: FakeEngine
) -> None:
    fake.enqueue(OverloadedError("busy", retry_after=3))
    r = await client.post("/v1/chat/completions", json=chat())
    assert_envelope(r, 503, "server_overloaded")
    assert r.headers["retry-after"] == "3"


async def test_client_disconnect_stops_generation() -> None:
    slow = fake_engine(token_delay=0.05, responses=[" ".join(["tok"] * 200)])
    produced: list[int] = []

    class Counting(FakeEngine):
        async def generate(self, prompt: Any, params: Any) -> Any:
            async for piece in super().generate(prompt, params):
                produced.append(1)
                yield piece

    engine = Counting("fake", "", slow.options)
    async with live_server([engine]) as url, httpx.AsyncClient(base_url=url) as c:
        async with c.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
            async for _line in r.aiter_lines():
                break
        await asyncio.sleep(0.5)
        count = len(produced)
        await asyncio.sleep(0.5)
        assert len(produced) == count < 50
        metrics = (await c.get("/metrics")).text
        assert 'allmende_requests_in_flight{model="fake"} 0.0' in metrics
        assert 'status="499"' in metrics


async def test_wrong_method_and_path(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/v1/chat/completions"), 405)
    assert_envelope(await client.get("/v1/nothing"), 404)


async def test_embeddings_on_chat_model_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert_envelope(r, 400)
