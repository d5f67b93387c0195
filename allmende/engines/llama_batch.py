"""Continuous batching over llama.cpp: every active request shares each decode step.

One scheduler thread owns the llama.cpp context. Each step it builds one batch holding the next
token of every generating sequence plus, within what is left of the batch budget, a chunk of at
most `prefill_chunk` prompt tokens of sequences still reading their prompt; decodes it; and
samples the next token of each sequence with that sequence's own native sampler chain (grammar,
penalties, top-p, temperature, seed). New requests join between steps; finished or cancelled
ones leave at once. Each sequence has its own region of the KV cache (`context_length` tokens).
A finished sequence keeps its prompt's KV cells; the next request whose prompt starts the same
way (a shared system prompt, a growing conversation) takes that sequence and evaluates only the
rest of its prompt. Requests with a seed always evaluate their whole prompt, so that the same
seed gives the same output.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from .local import Finished, SamplingParams

log = logging.getLogger("allmende.engines.llamacpp")

DONE = object()  # the last item a job receives
HANDOFF_WAIT = 0.005  # seconds the scheduler waits for the event loop after each step
Sink = Callable[[object], object]


@dataclass
class Job:
    """One generation: a prompt, its sampler chain, and where its output goes."""

    prompt: list[int]
    params: SamplingParams
    sampler: Any  # llama_sampler_p, owned by the job
    loop: asyncio.AbstractEventLoop  # where `sink` runs
    sink: Sink  # receives str pieces, then Finished or an exception, then DONE (on `loop`)
    cancelled: bool = False


@dataclass
class _Slot:
    seq: int
    job: Job
    fed: int = 0  # prompt tokens already in the batch stream
    pos: int = 0  # next position in this sequence
    generated: int = 0
    last: int | None = None  # sampled token still to be fed
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.job.prompt)


class BatchScheduler:
    def __init__(
        self,
        model: Any,  # llama_cpp._internals.LlamaModel
        *,
        parallel: int,
        context_length: int,
        threads: int,
        batch_size: int,
        prefill_chunk: int,
        flash_attention: str = "auto",
    ) -> None:
        from llama_cpp._internals import LlamaContext

        self.model = model
        self.vocab = model.vocab
        self.parallel = parallel
        self.context_length = context_length
        self.batch_size = max(batch_size, parallel)
        self.prefill_chunk = prefill_chunk
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = parallel * context_length
        params.n_seq_max = parallel
        params.n_batch = self.batch_size
        params.n_ubatch = self.batch_size
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = True  # one KV pool: mixed prefill/decode batches stay one ubatch
        params.no_perf = True
        params.flash_attn_type = {
            "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,  # llama.cpp decides (on for CPUs)
            "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[flash_attention]
        self.context = LlamaContext(model=model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.batch_size, 0, 1)
        self.waiting: deque[Job] = deque()
        self.slots: dict[int, _Slot] = {}
        self.free = list(range(parallel - 1, -1, -1))
        self.kept: dict[int, list[int]] = {}  # prompt tokens whose KV a free sequence still holds
        self.reused_tokens = 0  # prompt tokens served from kept KV cells (for metrics)
        self.lock = threading.Condition()
        self.stopping = False
        self.last_batch = 0  # tokens in the last decode step (for metrics)
        self._outbox: list[tuple[Job, object]] = []  # delivered once per step, in one wake-up
        self.thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self.thread.start()

    # -- called from the event loop -------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self.lock:
            self.waiting.append(job)
            self.lock.notify()

    def cancel(self, job: Job) -> None:
        with self.lock:
            job.cancelled = True
            self.lock.notify()

    def queued(self) -> int:
        return len(self.waiting)

    def active(self) -> int:
        return len(self.slots)

    def load(self) -> int:
        """Requests running or waiting (one consistent count: admission holds the lock)."""
        with self.lock:
            return len(self.slots) + len(self.waiting)

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.thread.join()
        for job in self.waiting:
            self._end(job, RuntimeError("the model was unloaded"))
        for slot in list(self.slots.values()):
            self._release(slot, RuntimeError("the model was unloaded"))
        self._flush()
        llama_cpp.llama_batch_free(self.batch)
        self.context.close()  # type: ignore[no-untyped-call]

    # -- the scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.stopping and not self.waiting and not self.slots:
                    self.lock.wait()
                if self.stopping:
                    return
                while self.waiting and self.free:
                    job = self.waiting.popleft()
                    if job.cancelled:
                        self._end(job, None)
                        continue
                    self._admit(job)
            for slot in [s for s in self.slots.values() if s.job.cancelled]:
                self._release(slot, None)
            if self.slots:
                try:
                    self._step()
                except Exception as exc:  # a failed decode ends every active request
                    log.exception("llama.cpp decode failed")
                    for slot in list(self.slots.values()):
                        self._release(slot, exc)
            self._flush()

    def _step(self) -> None:
        batch = self.batch
        n = 0
        sample_at: list[tuple[_Slot, int]] = []

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
            n += 1

        # Generating sequences first: one token each, so running streams never stall.
        for slot in self.slots.values():
            if not slot.prefilling and slot.last is not None:
                add(slot.last, slot.pos, slot.seq, True)
                sample_at.append((slot, n - 1))
                slot.pos += 1
        # Then prompt chunks, oldest request first, within the remaining budget.
        budget = self.batch_size - n
        for slot in self.slots.values():
            if budget <= 0:
                break
            if slot.prefilling:
                prompt = slot.job.prompt
                take = min(budget, self.prefill_chunk, len(prompt) - slot.fed)
                for i in range(slot.fed, slot.fed + take):
                    add(prompt[i], i, slot.seq, i == len(prompt) - 1)
                slot.fed += take
                slot.pos = slot.fed
                budget -= take
                if not slot.prefilling:
                    sample_at.append((slot, n - 1))
        batch.n_tokens = n
        self.last_batch = n
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        for slot, index in sample_at:
            self._sample(slot, index)

    def _sample(self, slot: _Slot, index: int) -> None:
        job = slot.job
        token = llama_cpp.llama_sampler_sample(job.sampler, self.ctx, index)
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        piece = self._piece(token)
        slot.generated += 1
        text = slot.decoder.decode(piece)
        self._emit(job, text)
        if slot.generated >= job.params.max_tokens or slot.pos + 1 >= self.context_length:
            self._finish(slot, "length")
            return
        slot.last = token

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def _finish(self, slot: _Slot, reason: str) -> None:
        tail = slot.decoder.decode(b"", final=True)
        if tail:
            self._emit(slot.job, tail)
        self._emit(slot.job, Finished(reason))
        self._release(slot, None, keep=True)

    def _admit(self, job: Job) -> None:
        """Give `job` a free sequence: the one whose kept prompt shares the longest prefix with
        it (its KV cells are reused), unless the job has a seed (then its prompt is evaluated
        afresh, so that the same seed gives the same output)."""
        prompt = job.prompt
        best, common = self.free[-1], 0
        if job.params.seed is None:
            for seq in self.free:
                shared = _common_prefix(self.kept.get(seq, ()), prompt)
                if shared > common:
                    best, common = seq, shared
        self.free.remove(best)
        common = min(common, len(prompt) - 1)  # the last prompt token gives the first logits
        llama_cpp.llama_memory_seq_rm(self.memory, best, common, -1)
        self.kept.pop(best, None)
        self.reused_tokens += common
        self.slots[best] = _Slot(best, job, fed=common, pos=common)

    def _release(self, slot: _Slot, error: BaseException | None, keep: bool = False) -> None:
        if keep:
            # Keep the prompt's KV cells for a later request with the same beginning.
            prompt = slot.job.prompt
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, len(prompt), -1)
            self.kept[slot.seq] = prompt
        else:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            self.kept.pop(slot.seq, None)
        with self.lock:
            self.slots.pop(slot.seq, None)
            self.free.append(slot.seq)
        self._end(slot.job, error)

    def _emit(self, job: Job, item: object) -> None:
        self._outbox.append((job, item))

    def _flush(self) -> None:
        """Hand this step's output to the event loops: one wake-up per loop, not per token."""
        if not self._outbox:
            return
        items, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, object]]] = {}
        for job, item in items:
            by_loop.setdefault(job.loop, []).append((job.sink, item))
        handled = threading.Event() if len(by_loop) == 1 else None
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, loop, pairs, handled)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                handled = None
        if handled is not None and self.slots:
            # Let the event loop turn this step's tokens into SSE events before the next decode
            # takes every core: Python work squeezed in mid-decode stalls llama.cpp's threads.
            handled.wait(HANDOFF_WAIT)

    def _end(self, job: Job, error: BaseException | None) -> None:
        if error is not None:
            self._emit(job, error)
        self._emit(job, DONE)
        if job.sampler is not None:
            llama_cpp.llama_sampler_free(job.sampler)
            job.sampler = None


def _deliver(
    loop: asyncio.AbstractEventLoop,
    pairs: list[tuple[Sink, object]],
    handled: threading.Event | None,
) -> None:
    for sink, item in pairs:
        sink(item)
    if handled is not None:
        # The consumers woken above run in this loop iteration, before this second hop.
        loop.call_soon(lambda: loop.call_soon(handled.set))


def _common_prefix(a: list[int] | tuple[()], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_sampler(vocab: Any, params: SamplingParams, grammar: str | None) -> Any:
    """A native sampler chain for one request. Raises ValueError for a grammar llama.cpp rejects."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if grammar is not None:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            llama_cpp.llama_sampler_free(chain)
            raise ValueError("llama.cpp could not parse the grammar")
        add(sampler)
    if params.presence_penalty or params.frequency_penalty:
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        add(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, 64, 1.0, params.frequency_penalty, params.presence_penalty
            )
        )
    if params.temperature <= 0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    if params.top_p < 1.0:
        add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    add(llama_cpp.llama_sampler_init_temp(params.temperature))
    add(llama_cpp.llama_sampler_init_dist(params.seed if params.seed is not None else 0xFFFFFFFF))
    return chain
