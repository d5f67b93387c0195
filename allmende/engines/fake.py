"""A scripted engine, shipped for tests and demos.

It answers with scripted replies (queued with `enqueue`, else cycled from its options), one
word-piece per token, and records every generation it was asked for in `calls`. It runs through
the same `LocalEngine` machinery as llama.cpp, so tool calls, stops and `n` behave the same.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncGenerator

from pydantic import Field

from ..errors import AllmendeError, EngineError
from .base import EngineOptions, ModelCard
from .chat_template import ChatTemplate
from .local import Finished, LocalEngine, SamplingParams

PIECE_RE = re.compile(r"\s*\S+|\s+")


class FakeOptions(EngineOptions):
    responses: list[str] = Field(
        default_factory=lambda: ["Hello! I am the fake engine."],
        description="Replies given in turn when nothing is queued.",
    )
    token_delay: float = Field(default=0.0, ge=0, description="Seconds to wait per token.")
    context_length: int = Field(default=4096, ge=16, description="Context window in tokens.")
    load_delay: float = Field(default=0.0, ge=0, description="Seconds `start` takes.")


class FakeEngine(LocalEngine):
    name = "fake"
    Options = FakeOptions
    options: FakeOptions

    def __init__(self, model_id: str, source: str, options: FakeOptions) -> None:
        super().__init__(model_id, source, options)
        self.template = ChatTemplate(None)
        self.queue: deque[str | Exception] = deque()
        self.calls: list[tuple[str, SamplingParams]] = []
        self._turn = 0
        self._vocab: dict[str, int] = {}
        self._pieces: list[str] = []

    def enqueue(self, *replies: str | Exception) -> None:
        """Script the next replies; an exception is raised by that generation instead."""
        self.queue.extend(replies)

    async def start(self) -> None:
        await asyncio.sleep(self.options.load_delay)

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.model_id,
            context_length=self.options.context_length,
            engine=self.name,
            source=self.source or "scripted",
        )

    @property
    def context_length(self) -> int:
        return self.options.context_length

    def tokenize(self, text: str) -> list[int]:
        ids = []
        for piece in PIECE_RE.findall(text):
            if piece not in self._vocab:
                self._vocab[piece] = len(self._pieces)
                self._pieces.append(piece)
            ids.append(self._vocab[piece])
        return ids

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(self._pieces[t] for t in tokens)

    def _next_reply(self) -> str | Exception:
        if self.queue:
            return self.queue.popleft()
        reply = self.options.responses[self._turn % len(self.options.responses)]
        self._turn += 1
        return reply

    async def generate(
        self, prompt: list[int], params: SamplingParams
    ) -> AsyncGenerator[str | Finished, None]:
        self.calls.append((self.detokenize(prompt), params))
        reply = self._next_reply()
        if isinstance(reply, Exception):
            if isinstance(reply, AllmendeError):
                raise reply
            raise EngineError("The fake engine was scripted to fail.") from reply
        pieces = PIECE_RE.findall(reply)
        for count, piece in enumerate(pieces):
            if count == params.max_tokens:
                yield Finished("length")
                return
            if self.options.token_delay:
                await asyncio.sleep(self.options.token_delay)
            yield piece
        yield Finished("stop")
