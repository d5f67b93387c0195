"""A single execution slot with a bounded waiting line, for engines that run one job at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import OverloadedError


class Admission:
    def __init__(self, model_id: str, max_queue: int, retry_after: int) -> None:
        self.model_id = model_id
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.waiting = 0
        self._slot = asyncio.Semaphore(1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the slot; wait in line for it, or raise 503 when the line is full."""
        if self._slot.locked() and self.waiting >= self.max_queue:
            raise OverloadedError(
                f"The model '{self.model_id}' is busy; try again shortly.",
                retry_after=self.retry_after,
            )
        self.waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slot.release()
