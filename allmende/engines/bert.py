"""Sentence embeddings with a BERT model directory (default: all-MiniLM-L6-v2), in numpy."""

from __future__ import annotations

import asyncio

from pydantic import Field

from ..embeddings import BertEmbedder
from ..errors import ContextLengthExceededError, EngineError
from .admission import Admission
from .base import Capabilities, Embeddings, Engine, EngineOptions, ModelCard


class BertOptions(EngineOptions):
    truncate: bool = Field(
        default=True,
        description="Cut inputs longer than the model's window (as sentence-transformers "
        "does); if false, such inputs get 400 context_length_exceeded.",
    )
    batch_size: int = Field(default=32, ge=1, description="Inputs encoded per batch.")
    max_queue: int = Field(default=64, ge=0, description="Requests that may wait.")
    retry_after: int = Field(default=2, ge=1, description="Retry-After seconds when full.")


class BertEngine(Engine):
    name = "bert"
    capabilities = Capabilities(embeddings=True)
    Options = BertOptions
    options: BertOptions

    def __init__(self, model_id: str, source: str, options: BertOptions) -> None:
        super().__init__(model_id, source, options)
        self._embedder: BertEmbedder | None = None
        self._admission = Admission(model_id, options.max_queue, options.retry_after)

    async def start(self) -> None:
        try:
            self._embedder = await asyncio.to_thread(BertEmbedder.from_directory, self.source)
        except (OSError, ValueError) as exc:
            raise EngineError(f"Cannot load the embedding model: {exc}") from exc

    def card(self) -> ModelCard:
        return ModelCard(
            id=self.model_id,
            context_length=self._embedder.max_tokens if self._embedder else None,
            engine=self.name,
            source=self.source,
            extra={"dimensions": self._embedder.dimensions} if self._embedder else {},
        )

    def queue_depth(self) -> int:
        return self._admission.waiting

    async def embed(self, texts: list[str]) -> Embeddings:
        embedder = self._embedder
        assert embedder is not None
        if not self.options.truncate:
            for i, count in enumerate(embedder.count_tokens(texts)):
                if count > embedder.max_tokens:
                    raise ContextLengthExceededError(
                        f"Input {i} has {count} tokens; this model takes at most "
                        f"{embedder.max_tokens}.",
                        param="input",
                    )
        async with self._admission.slot():
            vectors, tokens = await asyncio.to_thread(
                embedder.embed, texts, self.options.batch_size
            )
        return Embeddings(vectors=vectors.tolist(), prompt_tokens=tokens)
