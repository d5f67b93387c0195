"""The embedded engine: any GGUF model through llama.cpp (llama-cpp-python's bindings).

Requests are served by continuous batching (`llama_batch.BatchScheduler`): up to `parallel`
sequences share every decode step, each with `context_length` tokens of KV cache and its own
native sampler chain. Requests beyond `parallel` wait in a bounded line (`max_queue`); past it
they get 503 with Retry-After. The chat template comes from the GGUF metadata. Closing the event
stream (client gone) frees the sequence at the next step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncGenerator
from typing import Any, Literal

from pydantic import Field

from ..errors import EngineError, InvalidRequestError, OverloadedError
from .base import EngineOptions, ModelCard
from .chat_template import ChatTemplate
from .llama_batch import DONE, BatchScheduler, Job, build_sampler
from .local import Finished, LocalEngine, SamplingParams


class LlamaCppOptions(EngineOptions):
    context_length: int = Field(
        default=2048, ge=64, description="Context window per sequence, in tokens."
    )
    parallel: int = Field(
        default=8, ge=1, le=256, description="Sequences decoded together (batch slots)."
    )
    threads: int | None = Field(default=None, ge=1, description="CPU threads (default: all).")
    batch_size: int = Field(default=512, ge=1, description="Most tokens in one decode step.")
    flash_attention: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="llama.cpp's flash attention: `auto` lets llama.cpp decide (as llama-server "
        "does by default; on for CPUs), `on` or `off` forces it.",
    )
    prefill_chunk: int = Field(
        default=256, ge=1, description="Most prompt tokens of one request per decode step."
    )
    max_queue: int = Field(default=64, ge=0, description="Requests that may wait for a free slot.")
    retry_after: int = Field(default=2, ge=1, description="Retry-After seconds when full.")
    chat_template: str | None = Field(
        default=None, description="A Jinja chat template overriding the GGUF's own."
    )


class LlamaCppEngine(LocalEngine):
    name = "llamacpp"
    Options = LlamaCppOptions
    options: LlamaCppOptions
    default_temperature = 0.8

    def __init__(self, model_id: str, source: str, options: LlamaCppOptions) -> None:
        super().__init__(model_id, source, options)
        self._model: Any = None
        self._scheduler: BatchScheduler | None = None
        self._metadata: dict[str, str] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        meta = self._metadata
        source = self.options.chat_template or meta.get("tokenizer.chat_template")
        bos = self._token_text(self._model.token_bos())
        eos = self._token_text(self._model.token_eos())
        self.template = ChatTemplate(source, bos_token=bos, eos_token=eos)

    def _load(self) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        # llama.cpp logs through a Python callback; at the default level it prints every debug
        # line of every decode step, which costs throughput. Keep errors only.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        threads = self.options.threads or os.cpu_count() or 1
        try:
            self._model = LlamaModel(
                path_model=self.source,
                params=llama_cpp.llama_model_default_params(),
                verbose=False,
            )
            self._metadata = self._model.metadata()
            self._scheduler = BatchScheduler(
                self._model,
                parallel=self.options.parallel,
                context_length=self.options.context_length,
                threads=threads,
                batch_size=self.options.batch_size,
                prefill_chunk=self.options.prefill_chunk,
                flash_attention=self.options.flash_attention,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {self.source}: {exc}") from exc

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        piece: bytes = self._model.token_to_piece(token, special=True)
        return piece.rstrip(b"\0").decode("utf-8", "replace")

    async def aclose(self) -> None:
        if self._scheduler is not None:
            await asyncio.to_thread(self._scheduler.close)
            self._scheduler = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.model_id,
            owned_by=self._metadata.get("general.organization", "allmende"),
            context_length=self.options.context_length,
            engine=self.name,
            source=self.source,
            extra={"parallel": self.options.parallel},
        )

    @property
    def context_length(self) -> int:
        return self.options.context_length

    def queue_depth(self) -> int:
        return self._scheduler.queued() if self._scheduler else 0

    def running(self) -> int:
        return self._scheduler.active() if self._scheduler else 0

    def batch_tokens(self) -> int:
        return self._scheduler.last_batch if self._scheduler else 0

    def tokenize(self, text: str) -> list[int]:
        model = self._model
        tokens: list[int] = model.tokenize(text.encode("utf-8"), True, True)
        bos = model.token_bos()
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template already wrote the BOS token
        return tokens

    def _grammar(self, schema: dict[str, Any]) -> str:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            grammar: str = json_schema_to_gbnf(json.dumps(schema))
        except Exception as exc:  # the converter raises plain exceptions of several kinds
            raise InvalidRequestError(
                f"This JSON schema cannot be turned into a grammar: {exc}",
                param="response_format",
            ) from None
        return grammar

    async def generate(
        self, prompt: list[int], params: SamplingParams
    ) -> AsyncGenerator[str | Finished, None]:
        scheduler = self._scheduler
        if scheduler is None:
            raise EngineError(f"The model '{self.model_id}' is not loaded.")
        grammar = self._grammar(params.json_schema) if params.json_schema is not None else None
        # Submitted jobs count at once, before the scheduler thread has admitted them.
        if scheduler.load() >= scheduler.parallel + self.options.max_queue:
            raise OverloadedError(
                f"The model '{self.model_id}' is busy; try again shortly.",
                retry_after=self.options.retry_after,
            )
        try:
            sampler = build_sampler(scheduler.vocab, params, grammar)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), param="response_format") from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        job = Job(
            prompt=prompt,
            params=params,
            sampler=sampler,
            loop=loop,
            sink=queue.put_nowait,
        )
        scheduler.submit(job)
        try:
            while (item := await queue.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise EngineError("The model failed while generating.") from item
                assert isinstance(item, str | Finished)
                yield item
        finally:
            scheduler.cancel(job)
