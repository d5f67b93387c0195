"""The embedded engine: any GGUF model through llama.cpp (llama-cpp-python).

Generation runs in one worker thread per model, one request at a time; requests beyond that
wait in a bounded queue (`max_queue`), and past it get 503 with Retry-After. Sampling uses
llama.cpp's native sampler chain (with a GBNF grammar for JSON Schema output); the chat template
comes from the GGUF metadata. Closing the event stream stops the generation at the next token.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import random
import threading
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import Field

from ..errors import EngineError, InvalidRequestError
from .admission import Admission
from .base import EngineOptions, ModelCard
from .chat_template import ChatTemplate
from .local import Finished, LocalEngine, SamplingParams

_DONE = object()


class LlamaCppOptions(EngineOptions):
    context_length: int = Field(default=4096, ge=64, description="Context window in tokens.")
    threads: int | None = Field(default=None, ge=1, description="CPU threads (default: all).")
    batch_size: int = Field(default=512, ge=1, description="Prompt tokens per decode batch.")
    max_queue: int = Field(default=64, ge=0, description="Requests that may wait.")
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
        self._llama: Any = None
        self._admission = Admission(model_id, options.max_queue, options.retry_after)
        self._context = options.context_length

    async def start(self) -> None:
        self._llama = await asyncio.to_thread(self._load)
        meta: dict[str, str] = self._llama.metadata
        source = self.options.chat_template or meta.get("tokenizer.chat_template")
        bos = self._token_text(self._llama.token_bos())
        eos = self._token_text(self._llama.token_eos())
        self.template = ChatTemplate(source, bos_token=bos, eos_token=eos)
        self._context = int(self._llama.n_ctx())

    def _load(self) -> Any:
        from llama_cpp import Llama

        threads = self.options.threads or os.cpu_count() or 1
        try:
            return Llama(
                model_path=self.source,
                n_ctx=self.options.context_length,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=self.options.batch_size,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {self.source}: {exc}") from exc

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._llama.detokenize([token], special=True)).decode("utf-8", "replace")

    async def aclose(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def card(self) -> ModelCard:
        meta: dict[str, str] = self._llama.metadata if self._llama is not None else {}
        return ModelCard(
            id=self.model_id,
            owned_by=meta.get("general.organization", "allmende"),
            context_length=self._context,
            engine=self.name,
            source=self.source,
        )

    @property
    def context_length(self) -> int:
        return self._context

    def queue_depth(self) -> int:
        return self._admission.waiting

    def tokenize(self, text: str) -> list[int]:
        tokens: list[int] = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        bos = self._llama.token_bos()
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template already wrote the BOS token
        return tokens

    def _grammar(self, schema: dict[str, Any]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as exc:  # the converter raises plain exceptions of several kinds
            raise InvalidRequestError(
                f"This JSON schema cannot be turned into a grammar: {exc}",
                param="response_format",
            ) from None

    async def generate(
        self, prompt: list[int], params: SamplingParams
    ) -> AsyncGenerator[str | Finished, None]:
        grammar = self._grammar(params.json_schema) if params.json_schema is not None else None
        async with self._admission.slot():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[object] = asyncio.Queue()
            cancel = threading.Event()

            def put(item: object) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            worker = threading.Thread(
                target=self._worker, args=(prompt, params, grammar, cancel, put), daemon=True
            )
            worker.start()
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise EngineError("The model failed while generating.") from item
                    assert isinstance(item, str | Finished)
                    yield item
            finally:
                cancel.set()
                await asyncio.to_thread(worker.join)

    def _worker(
        self,
        prompt: list[int],
        params: SamplingParams,
        grammar: Any,
        cancel: threading.Event,
        put: Any,
    ) -> None:
        """Decode in this thread; hand each token's text to the event loop."""
        import llama_cpp

        llama = self._llama
        try:
            seed = random.getrandbits(32) if params.seed is None else params.seed & 0xFFFFFFFF
            llama.set_seed(seed)
            # Same input, same output: evaluate the whole prompt afresh. Logits computed from a
            # reused KV prefix plus a short re-evaluation differ in the last bits from a full
            # prompt pass, which flips near-ties even at temperature 0.
            llama.reset()
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            count = 0
            reason = "length"
            for token in llama.generate(
                prompt,
                temp=params.temperature,
                top_p=params.top_p,
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                grammar=grammar,
                reset=True,
            ):
                if cancel.is_set():
                    return
                if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                    reason = "stop"
                    break
                put(decoder.decode(bytes(llama.detokenize([token]))))
                count += 1
                if count >= params.max_tokens:
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                put(tail)
            put(Finished(reason))
        except Exception as exc:
            put(exc)
        finally:
            put(_DONE)
