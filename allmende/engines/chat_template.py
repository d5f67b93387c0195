"""Render a conversation with a model's own Jinja chat template (as in GGUF metadata)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InvalidRequestError
from ..protocol import ChatMessage, Tool

# ChatML, used when a model carries no template of its own.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise InvalidRequestError(f"The chat template rejected the conversation: {message}")


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda v, indent=None: json.dumps(
            v, ensure_ascii=False, indent=indent
        )
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: date.today().strftime(fmt)
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.supports_tools = "tools" in self.source

    def render(
        self,
        messages: list[ChatMessage],
        tools: list[Tool] | None = None,
        system_suffix: str | None = None,
    ) -> str:
        """The prompt text, ending with the assistant's turn opening.

        `system_suffix` (tool instructions) is appended to the first system message or becomes one.
        """
        rendered = [self._message(m) for m in messages]
        if system_suffix:
            if rendered and rendered[0]["role"] == "system":
                rendered[0]["content"] = f"{rendered[0]['content']}\n\n{system_suffix}"
            else:
                rendered.insert(0, {"role": "system", "content": system_suffix})
        try:
            return self._template.render(
                messages=rendered,
                tools=[t.model_dump(exclude_unset=True) for t in tools] if tools else None,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except InvalidRequestError:
            raise
        except jinja2.TemplateError as exc:
            raise InvalidRequestError(f"The chat template failed: {exc}") from None

    @staticmethod
    def _message(message: ChatMessage) -> dict[str, Any]:
        role = "system" if message.role == "developer" else message.role
        content = message.text()
        if message.tool_calls:
            calls = "".join(
                f'<tool_call>{{"name": {json.dumps(c.function.name)}, '
                f'"arguments": {c.function.arguments or "{}"}}}</tool_call>'
                for c in message.tool_calls
            )
            content = f"{content}{calls}"
        out: dict[str, Any] = {"role": role, "content": content}
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
        return out
