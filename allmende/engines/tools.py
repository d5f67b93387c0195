"""Tool calling and structured output for engines that generate text themselves.

Models without native tool support are told about the tools in the system prompt and answer with
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the Hermes/Qwen convention). When a
call is required or named, decoding is constrained to the JSON Schema built here, so the
arguments always validate against the function's parameters.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..errors import InvalidRequestError
from ..protocol import ChatCompletionRequest, NamedToolChoice, Tool

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
TOOL_CALL_OPEN = "<tool_call>"


def check_schema(schema: Any, param: str) -> dict[str, Any]:
    """Raise a 400 naming `param` unless `schema` is a valid JSON Schema object."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("The JSON schema must be an object.", param=param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequestError(f"Invalid JSON schema: {exc.message}", param=param) from None
    return schema


def output_schema(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """The JSON Schema that `response_format` asks the answer to follow, if any."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    assert fmt.json_schema is not None
    schema = fmt.json_schema.schema_ if fmt.json_schema.schema_ is not None else {}
    return check_schema(schema, "response_format.json_schema.schema")


def check_tools(tools: list[Tool]) -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in seen:
            raise InvalidRequestError(f"Duplicate tool name '{name}'.", param=f"tools[{i}]")
        seen.add(name)
        check_schema(tool.function.parameters, f"tools[{i}].function.parameters")


def forced_call_schema(tools: list[Tool], choice: str | NamedToolChoice) -> dict[str, Any]:
    """Schema of one call: to the named function, or (`required`) to any of the tools."""
    chosen = [
        t
        for t in tools
        if not isinstance(choice, NamedToolChoice) or t.function.name == choice.function.name
    ]
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def tool_instructions(tools: list[Tool]) -> str:
    specs = [
        {
            "name": t.function.name,
            "description": t.function.description or "",
            "parameters": t.function.parameters,
        }
        for t in tools
    ]
    return (
        "You can call functions. Their names and the JSON Schema of their arguments:\n"
        + json.dumps(specs, ensure_ascii=False)
        + "\nTo call a function, reply with only "
        + '<tool_call>{"name": "<function name>", "arguments": {<arguments>}}</tool_call>'
    )


def make_call(index: int, name: str, arguments: Any) -> dict[str, Any]:
    """An OpenAI tool-call delta carrying a complete call."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "index": index,
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def parse_forced(text: str) -> list[dict[str, Any]]:
    """Turn constrained output (`{"name", "arguments"}`) into one tool call."""
    data = json.loads(text)
    return [make_call(0, data["name"], data["arguments"])]


def parse_auto(text: str, tools: list[Tool]) -> list[dict[str, Any]] | None:
    """Tool calls found in free output, or None if the model answered in prose."""
    names = {t.function.name for t in tools}
    candidates = TOOL_CALL_RE.findall(text)
    stripped = text.strip()
    if not candidates and stripped.startswith("{") and stripped.endswith("}"):
        candidates = [stripped]
    calls: list[dict[str, Any]] = []
    for raw in candidates:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("name") in names:
            calls.append(make_call(len(calls), data["name"], data.get("arguments", {})))
    return calls or None
