"""The gateway service: keeps one `PoolEngine` (and fair-share queue) per model the nodes offer.

After every round of node checks (and whenever a node is marked down) `sync` updates each
model's queue capacity to the slots of the up nodes offering it and hands the queues the current
fair-share weights. Models appear when the first node offers them; a model whose nodes are all
down stays known (requests for it get 503) but leaves `/v1/models` until a node offers it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy.engine import Engine as Database

from ..commons.fairshare import FairQueue
from ..config import Settings
from .engine import PoolEngine
from .pool import NodePool

# What a request is assumed to cost (tokens) before a member's average is known.
INITIAL_COST = 256


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        local_models: Iterable[str] = (),
        on_engine: Callable[[PoolEngine], None] | None = None,
        instance: str = "",
    ) -> None:
        self.settings = settings
        self.pool = NodePool(
            settings, local_models=local_models, on_change=self.sync, instance=instance
        )
        self.engines: dict[str, PoolEngine] = {}
        self.on_engine = on_engine

    async def start(self, database: Database) -> None:
        await self.pool.start(database)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def sync(self) -> None:
        for model_id in self.pool.models():
            if model_id not in self.engines:
                queue = FairQueue(
                    capacity=0,
                    max_queue=self.settings.max_queue,
                    retry_after=self.settings.retry_after,
                    initial_cost=INITIAL_COST,
                )
                engine = PoolEngine(model_id, self.pool, queue)
                self.engines[model_id] = engine
                if self.on_engine is not None:
                    self.on_engine(engine)
        for model_id, engine in self.engines.items():
            engine.queue.set_weights(self.pool.weights, default=self.pool.default_weight)
            capacity = self.pool.capacity(model_id)
            engine.queue.set_capacity(capacity)
            if capacity == 0:  # its nodes are all down: nobody waits for them
                engine.queue.fail_waiting(engine.no_node)

    def available(self) -> list[PoolEngine]:
        """The models some up node offers right now."""
        offered = self.pool.models()
        return [e for model_id, e in self.engines.items() if model_id in offered]

    def get(self, model_id: str) -> PoolEngine | None:
        return self.engines.get(model_id)


__all__ = ["Gateway"]
