"""`create_app`: the ASGI application, built from settings and engines (no module globals)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..engines.base import Engine
from ..gateway import context
from ..gateway.service import Gateway
from . import errors
from .admin import router as admin_router
from .fastpath import FastPath
from .gate import Gate
from .joins import router as joins_router
from .metrics import Metrics
from .openness import openness_summary
from .openness import router as openness_router
from .routes import router
from .serving import ModelRegistry

log = logging.getLogger("allmende.api")


async def load_engines(registry: ModelRegistry, on_ready: Callable[[], None] | None) -> None:
    """Start every engine; the registry is ready only when all have loaded."""
    for engine in registry.engines.values():
        began = time.perf_counter()
        log.info("Loading model '%s' (%s: %s)", engine.model_id, engine.name, engine.source)
        try:
            await engine.start()
        except Exception as exc:
            registry.failed = f"Model '{engine.model_id}' failed to load: {exc}"
            log.error("%s", registry.failed)
            return
        log.info("Loaded '%s' in %.1fs", engine.model_id, time.perf_counter() - began)
        await asyncio.to_thread(openness_summary, engine)  # build the report once, off the loop
    registry.ready = True
    if on_ready is not None:
        on_ready()


def create_app(
    settings: Settings,
    engines: list[Engine],
    on_ready: Callable[[], None] | None = None,
    instance: str | None = None,
) -> FastAPI:
    """The app serving `engines`. Models load in the background; `/health` says when ready.
    `instance`: this server's id in `Allmende-Via` (shared by the workers of one `serve`;
    random if not given)."""
    instance = instance or context.new_instance()
    metrics = Metrics()

    def track(engine: Engine) -> None:
        metrics.track_engine(
            engine.model_id, engine.queue_depth, engine.running, engine.batch_tokens
        )

    for engine in engines:
        track(engine)
    gateway = Gateway(
        settings, local_models=[e.model_id for e in engines], on_engine=track, instance=instance
    )
    metrics.track_nodes(gateway.pool)
    registry = ModelRegistry(engines, gateway)
    gate = Gate(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gate.open()
        assert gate.engine is not None
        await gateway.start(gate.engine)
        loading = asyncio.create_task(load_engines(registry, on_ready))
        try:
            yield
        finally:
            loading.cancel()
            await gateway.aclose()
            for engine in engines:
                await engine.aclose()
            await gate.close()

    app = FastAPI(
        title="Allmende",
        version=__version__,
        description="OpenAI-compatible API over open models.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models = registry
    app.state.metrics = metrics
    app.state.gate = gate
    app.state.gateway = gateway
    app.state.instance = instance
    errors.install(app)
    app.include_router(router)
    app.include_router(openness_router)
    app.include_router(admin_router)
    app.include_router(joins_router)
    app.add_middleware(FastPath, limit=settings.max_body_bytes)
    return app
