"""`fastjson` gives what the standard library gives, also where orjson alone would not."""

from __future__ import annotations

import json
import math

import pytest

from allmende import fastjson

BODIES = [
    '{"a": 1, "b": [true, null, "x\\u00e9"], "c": 1.5}',
    '{"big": 18446744073709551616, "low": -9223372036854775809}',  # beyond 64 bits
    '{"id": "1234567890123456789012", "n": 12345678901234567890}',  # long digit runs
    '{"x": NaN, "y": Infinity}',
    '"\\ud83d"',  # a lone surrogate, escaped
]


@pytest.mark.parametrize("text", BODIES)
def test_loads_is_json_loads(text: str) -> None:
    for data in (text, text.encode()):
        got, expected = fastjson.loads(data), json.loads(data)
        assert repr(got) == repr(expected)  # repr: NaN != NaN, and int vs float matters


@pytest.mark.parametrize("bad", [b"{not json", b"", b'{"a": 1', "[1,]"])
def test_loads_raises_value_error(bad: bytes | str) -> None:
    with pytest.raises(ValueError):
        fastjson.loads(bad)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "é": "ü"},
        {"big": 2**70},
        {"text": "\ud83d"},
        {"deep": json.loads("[" * 300 + "]" * 300)},
    ],
)
def test_dumps_round_trips_as_utf8_json(value: object) -> None:
    out = fastjson.dumps(value)
    assert isinstance(out, bytes)
    assert json.loads(out.decode("utf-8")) == value
    assert b": " not in out and b", " not in out  # compact


def test_dumps_writes_no_invalid_json_for_nan() -> None:
    assert json.loads(fastjson.dumps({"x": math.nan})) == {"x": None}
