"""Chat and completions for engines that turn a prompt into tokens themselves.

`LocalEngine` does everything above raw generation once, for every such engine (llama.cpp, the
fake): chat templating, tool prompting and parsing, structured output, stop sequences, `n`,
context checks and usage. A subclass supplies four things: `template`, `context_length`,
`tokenize(text)` and `generate(tokens, params)`.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..errors import ContextLengthExceededError, EngineError
from ..protocol import ChatCompletionRequest, CompletionRequest, NamedToolChoice
from . import tools as toolkit
from .base import Capabilities, Delta, Engine, Event, Usage
from .chat_template import ChatTemplate


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    json_schema: dict[str, Any] | None = None  # constrain the output to this schema


@dataclass(frozen=True)
class Finished:
    """The end of a raw generation: `stop` (end of sequence) or `length`."""

    reason: str


class StopMatcher:
    """Cuts streamed text at the first stop sequence, holding back a possible partial match."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop sequence was hit."""
        self.buffer += piece
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out, False
        cut = min((i for s in self.stops if (i := self.buffer.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        keep = min(self.hold, len(self.buffer))
        # Hold back only a tail that could start a stop sequence.
        while keep and not any(s.startswith(self.buffer[-keep:]) for s in self.stops):
            keep -= 1
        out = self.buffer[: len(self.buffer) - keep]
        self.buffer = self.buffer[len(self.buffer) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class LocalEngine(Engine):
    capabilities = Capabilities(chat=True, completions=True, tools=True, json_schema=True)
    template: ChatTemplate
    default_temperature = 1.0

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def generate(
        self, prompt: list[int], params: SamplingParams
    ) -> AsyncGenerator[str | Finished, None]:
        """Yield one text piece per generated token (possibly ''), then one `Finished`."""

    # -- shared machinery -----------------------------------------------------------------------

    def _budget(self, prompt: list[int], requested: int | None, param: str) -> int:
        room = self.context_length - len(prompt)
        if room <= 0:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.context_length} tokens, but the "
                f"prompt has {len(prompt)} tokens.",
                param=param,
            )
        return room if requested is None else min(requested, room)

    async def _run(
        self, prompt: list[int], params: SamplingParams, stops: list[str]
    ) -> AsyncIterator[str | Finished | int]:
        """One choice: text pieces, then its `Finished`, then its completion token count."""
        matcher = StopMatcher(stops)
        tokens = 0
        gen = self.generate(prompt, params)
        try:
            async for item in gen:
                if isinstance(item, Finished):
                    if rest := matcher.flush():
                        yield rest
                    yield item
                    break
                tokens += 1
                out, stopped = matcher.feed(item)
                if out:
                    yield out
                if stopped:
                    yield Finished("stop")
                    break
            else:
                raise EngineError("The engine ended a generation without a finish reason.")
        finally:
            await gen.aclose()
        yield tokens

    def _params(
        self,
        request: ChatCompletionRequest | CompletionRequest,
        max_tokens: int,
        index: int,
        schema: dict[str, Any] | None,
    ) -> SamplingParams:
        seed = None if request.seed is None else request.seed + index
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=(
                self.default_temperature if request.temperature is None else request.temperature
            ),
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=seed,
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            json_schema=schema,
        )

    async def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Event]:
        choice = request.effective_tool_choice()
        tools = request.tools if choice != "none" else None
        schema = toolkit.output_schema(request)
        forced = tools is not None and (choice == "required" or isinstance(choice, NamedToolChoice))
        if tools:
            toolkit.check_tools(tools)
            if forced:
                schema = toolkit.forced_call_schema(tools, choice)
        instructions = toolkit.tool_instructions(tools) if tools else None
        if tools and self.template.supports_tools:
            text = self.template.render(request.messages, tools=tools)
        else:
            text = self.template.render(request.messages, system_suffix=instructions)
        prompt = self.tokenize(text)
        max_tokens = self._budget(prompt, request.token_limit(), "messages")
        completion_tokens = 0
        for index in range(request.n):
            params = self._params(request, max_tokens, index, schema)
            buffered = forced or bool(tools)
            held = ""
            async for item in self._run(prompt, params, request.stops()):
                if isinstance(item, int):
                    completion_tokens += item
                elif isinstance(item, str):
                    if not buffered:
                        yield Delta(index=index, text=item)
                        continue
                    held += item
                    # In `auto` mode, stream prose as soon as it cannot be a tool call.
                    lead = held.lstrip()
                    if (
                        not forced
                        and lead
                        and not (
                            toolkit.TOOL_CALL_OPEN.startswith(lead[: len(toolkit.TOOL_CALL_OPEN)])
                            or lead.startswith("{")
                        )
                    ):
                        buffered = False
                        yield Delta(index=index, text=held)
                elif buffered and tools:
                    yield self._tool_result(index, held, item, forced, request)
                else:
                    yield Delta(index=index, finish_reason=item.reason)
        yield Usage(prompt_tokens=len(prompt), completion_tokens=completion_tokens)

    def _tool_result(
        self,
        index: int,
        text: str,
        end: Finished,
        forced: bool,
        request: ChatCompletionRequest,
    ) -> Delta:
        assert request.tools is not None
        calls: list[dict[str, Any]] | None
        if forced:
            try:
                calls = toolkit.parse_forced(text)
            except (json.JSONDecodeError, KeyError, TypeError):
                # Only a cut-off (length) answer can fail to parse under the grammar.
                return Delta(index=index, text=text, finish_reason=end.reason)
        else:
            calls = toolkit.parse_auto(text, request.tools)
        if calls is None:
            return Delta(index=index, text=text, finish_reason=end.reason)
        return Delta(index=index, tool_calls=calls, finish_reason="tool_calls")

    async def complete(self, request: CompletionRequest) -> AsyncIterator[Event]:
        prompts = [self.tokenize(p) for p in request.prompts()]
        budgets = [self._budget(p, request.max_tokens, "prompt") for p in prompts]
        usage = Usage()
        for p_index, (prompt, budget) in enumerate(zip(prompts, budgets, strict=True)):
            usage.prompt_tokens += len(prompt)
            for n_index in range(request.n):
                index = p_index * request.n + n_index
                params = self._params(request, budget, n_index, None)
                async for item in self._run(prompt, params, request.stops()):
                    if isinstance(item, int):
                        usage.completion_tokens += item
                    elif isinstance(item, str):
                        yield Delta(index=index, text=item)
                    else:
                        yield Delta(index=index, finish_reason=item.reason)
        yield usage
