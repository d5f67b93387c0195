"""Contract tests: the official `openai` SDK as the client, against the in-process app."""

from __future__ import annotations

import json

import openai
import pytest

from allmende.engines.fake import FakeEngine

from .conftest import fake_engine, serve_app

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say hi"}
]


async def test_chat(sdk: openai.AsyncOpenAI, fake: FakeEngine) -> None:
    fake.enqueue("Hi there")
    result = await sdk.chat.completions.create(model="fake", messages=MESSAGES, max_tokens=10)
    assert result.choices[0].message.content == "Hi there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 2


async def test_chat_stream(sdk: openai.AsyncOpenAI, fake: FakeEngine) -> None:
    fake.enqueue("one two three")
    stream = await sdk.chat.completions.create(
        model="fake", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    text, reasons, usage = "", [], None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert text == "one two three"
    assert reasons == ["stop"]
    assert usage is not None and usage.completion_tokens == 3


async def test_chat_tool_call(sdk: openai.AsyncOpenAI, fake: FakeEngine) -> None:
    fake.enqueue('{"name": "lookup", "arguments": {"q": "allmende"}}')
    result = await sdk.chat.completions.create(
        model="fake",
        messages=MESSAGES,
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
        tool_choice="required",
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "allmende"}


async def test_streamed_tool_call(sdk: openai.AsyncOpenAI, fake: FakeEngine) -> None:
    fake.enqueue('{"name": "lookup", "arguments": {"q": "x"}}')
    stream = await sdk.chat.completions.create(
        model="fake",
        messages=MESSAGES,
        tools=[{"type": "function", "function": {"name": "lookup"}}],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        stream=True,
    )
    names, args = [], ""
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.function is not None
                names.append(call.function.name)
                args += call.function.arguments or ""
    assert names == ["lookup"]
    assert json.loads(args) == {"q": "x"}


async def test_completions(sdk: openai.AsyncOpenAI, fake: FakeEngine) -> None:
    fake.enqueue("world")
    result = await sdk.completions.create(model="fake", prompt="Hello", max_tokens=4)
    assert result.choices[0].text == "world"
    fake.enqueue("a b")
    stream = await sdk.completions.create(model="fake", prompt="Hello", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == "a b"


async def test_models(sdk: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in sdk.models.list()]
    assert models == ["fake"]
    assert (await sdk.models.retrieve("fake")).id == "fake"


async def test_errors_become_sdk_exceptions(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        await sdk.chat.completions.create(model="missing", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.chat.completions.create(model="fake", messages=MESSAGES, max_tokens=-1)
    assert bad.value.param == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("missing")


async def test_context_error_in_sdk() -> None:
    engine = fake_engine(context_length=16)
    async for _, client in serve_app([engine]):
        async with openai.AsyncOpenAI(
            base_url="http://test/v1", api_key="x", http_client=client, max_retries=0
        ) as sdk:
            with pytest.raises(openai.BadRequestError) as exc:
                await sdk.chat.completions.create(
                    model="fake", messages=[{"role": "user", "content": "w " * 50}]
                )
            assert exc.value.code == "context_length_exceeded"
