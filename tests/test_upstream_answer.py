"""How the upstream engine reads a non-streamed answer (the gateway's path for clients that do
not stream): the events a stream of the same answer would give, or a clear upstream error."""

from __future__ import annotations

import json

import pytest

from allmende.engines.base import Delta, Usage
from allmende.engines.upstream import _answer
from allmende.errors import UpstreamError

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
CALL2 = {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}}


def test_chat_answer_with_tool_calls_and_two_choices() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"content": None, "tool_calls": [CALL, CALL2]},
                "finish_reason": None,
            },
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    assert _answer(json.dumps(body).encode(), "content") == [
        Delta(0, "Hi", None, "stop"),
        # as stream deltas: each call with its place; no reason given: the answer is complete
        Delta(1, None, [{"index": 0, **CALL}, {"index": 1, **CALL2}], "stop"),
        Usage(7, 3),
    ]


def test_completion_answer_without_usage() -> None:
    body = {"choices": [{"index": 0, "text": "lo", "finish_reason": "length"}]}
    assert _answer(json.dumps(body).encode(), "text") == [Delta(0, "lo", None, "length"), Usage()]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"choices": [{"index": 0, "mess', "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"choices": []}', "without choices"),
        (b'{"error": {"message": "boom"}}', "boom"),
    ],
)
def test_bad_answers_are_upstream_errors(raw: bytes, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        _answer(raw, "content")


def test_tool_call_arguments_given_as_an_object_become_text() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    body = {"choices": [{"index": 0, "message": {"tool_calls": [call]}}]}
    [delta, _] = _answer(json.dumps(body).encode(), "content")
    assert isinstance(delta, Delta) and delta.tool_calls is not None
    assert delta.tool_calls[0]["function"]["arguments"] == '{"a": 1}'
