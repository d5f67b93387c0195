"""The node pool: the contributed nodes a gateway routes to, and what each one serves.

Every `check_interval` seconds the pool re-reads the active nodes from the commons database and
asks each node for its `/v1/models` (with `timeout`). A node that answers is up and offers the
models it lists, less any that the openness policy refuses or that a local engine already serves
under the same id. A node that fails the check, or a request to it fails at the transport level,
is marked down at once and gets no requests until a later check succeeds.

`pick(model)` chooses, among the up nodes offering the model, the one with the fewest
outstanding requests (relative to its slots: a node with free slots comes first), so load spreads
evenly and a slow node gets less. Per model, the pool keeps a `PoolEngine` (the engine seam) and
its fair-share queue, whose capacity is the sum of the slots of the nodes offering the model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine as Database

from ..commons import db, ledger, members
from ..commons.fairshare import weights as share_weights
from ..commons.nodes import Node, list_nodes
from ..config import Settings
from ..engines.upstream import UpstreamEngine, UpstreamOptions, base_url
from ..errors import InvalidRequestError
from ..openness.policy import OpennessPolicy
from . import context

log = logging.getLogger("allmende.gateway")


@dataclass
class NodeState:
    """What the gateway knows about one node right now."""

    node: Node
    client: httpx.AsyncClient
    up: bool = False
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # offered id -> listing
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    error: str | None = None
    checked_at: float = 0.0
    upstreams: dict[str, UpstreamEngine] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.node.id

    def load(self) -> float:
        """Outstanding requests per slot (what routing minimises)."""
        return self.outstanding / max(1, self.node.slots)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.node.to_dict(),
            "status": "up" if self.up else "down",
            "models": sorted(self.models),
            "outstanding": self.outstanding,
            "served": self.served,
            "error": self.error,
        }


class NodePool:
    def __init__(
        self,
        settings: Settings,
        *,
        local_models: Iterable[str] = (),
        on_change: Callable[[], None] | None = None,
        instance: str = "",
    ) -> None:
        self.settings = settings
        self.instance = instance  # sent in Allmende-Via with health checks: a loop shows
        self.check_interval = settings.node_check_interval
        self.timeout = settings.node_timeout
        self._refreshing = asyncio.Lock()
        self.policy: OpennessPolicy | None = settings.openness_policy
        self.local_models = set(local_models)
        self.nodes: dict[int, NodeState] = {}
        self.database: Database | None = None
        self.on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._policy_cache: dict[str, list[str]] = {}
        self._turn = itertools.count()
        self.weights: dict[int, float] = {}
        self.default_weight = 1.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, database: Database) -> None:
        """First look at the nodes (so the models are known before serving), then keep looking."""
        self.database = database
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="allmende-node-checks")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for state in self.nodes.values():
            await self._close(state)
        self.nodes.clear()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self.refresh()
            except Exception:  # the loop must outlive any one bad round
                log.exception("Node checks failed")

    # -- discovery and health ------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read the registry, check every node, recompute fair-share weights (one round at
        a time: the periodic one and one asked for, after a node joined, never interleave)."""
        if self.database is None:
            return
        async with self._refreshing:
            await self._refresh(self.database)

    async def _refresh(self, database: Database) -> None:
        registered = await asyncio.to_thread(list_nodes, database)
        wanted = {n.id: n for n in registered}
        for node_id in list(self.nodes):
            state = self.nodes[node_id]
            if node_id not in wanted or wanted[node_id] != state.node:
                log.info("Node %d (%s) left the pool", node_id, state.node.url)
                del self.nodes[node_id]
                await self._close(state)
        for node in registered:
            if node.id not in self.nodes:
                self.nodes[node.id] = NodeState(node, self._client(node))
        await asyncio.gather(*(self.check(s) for s in list(self.nodes.values())))
        if self.nodes:  # weights matter only for the queues of node models
            self.weights = await asyncio.to_thread(self._weights, database)
        if self.on_change is not None:
            self.on_change()

    def _client(self, node: Node) -> httpx.AsyncClient:
        headers = _headers(node.api_key, self.instance)
        return httpx.AsyncClient(base_url=base_url(node.url), headers=headers, timeout=self.timeout)

    async def _close(self, state: NodeState) -> None:
        await state.client.aclose()
        for upstream in state.upstreams.values():
            await upstream.aclose()
        state.upstreams.clear()

    async def check(self, state: NodeState) -> None:
        """One health check: the node's model listing, filtered by policy and local ids."""
        state.checked_at = time.monotonic()
        try:
            entries = await _listing(state.client)
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            self.mark_down(state, f"health check failed: {_reason(exc)}")
            return
        offered = {}
        for model_id, entry in entries.items():
            if model_id in self.local_models:
                continue
            if await self._refused(model_id):
                continue
            offered[model_id] = entry
        state.models = offered
        state.failures = 0
        state.error = None
        if not state.up:
            log.info(
                "Node %d (%s) is up: %s",
                state.id,
                state.node.url,
                ", ".join(offered) or "no models",
            )
        state.up = True

    async def _refused(self, model_id: str) -> bool:
        """Whether the openness policy refuses `model_id` (judged from the catalog by id)."""
        if self.policy is None:
            return False
        if model_id not in self._policy_cache:
            self._policy_cache[model_id] = await asyncio.to_thread(
                _violations, self.policy, model_id
            )
            if self._policy_cache[model_id]:
                log.warning(
                    "Not offering '%s' from the nodes under the openness policy: %s",
                    model_id,
                    "; ".join(self._policy_cache[model_id]),
                )
        return bool(self._policy_cache[model_id])

    def mark_down(self, state: NodeState, reason: str) -> None:
        state.failures += 1
        state.error = reason
        if state.up:
            log.warning("Node %d (%s) is down: %s", state.id, state.node.url, reason)
            state.up = False
            if self.on_change is not None:
                self.on_change()

    # -- routing -----------------------------------------------------------------------------

    def offering(self, model_id: str) -> list[NodeState]:
        return [s for s in self.nodes.values() if s.up and model_id in s.models]

    def models(self) -> dict[str, list[NodeState]]:
        """Offered model id -> the up nodes offering it."""
        found: dict[str, list[NodeState]] = {}
        for state in self.nodes.values():
            if state.up:
                for model_id in state.models:
                    found.setdefault(model_id, []).append(state)
        return found

    def capacity(self, model_id: str) -> int:
        """This process's share of the slots of the up nodes offering `model_id` (with several
        worker processes, each gets an equal part, rounded up)."""
        total = sum(s.node.slots for s in self.offering(model_id))
        return -(-total // self.settings.workers)

    def pick(self, model_id: str, exclude: set[int]) -> NodeState | None:
        """The up node offering `model_id` with the lowest load, not in `exclude`."""
        candidates = [s for s in self.offering(model_id) if s.id not in exclude]
        if not candidates:
            return None
        least = min(s.load() for s in candidates)
        tied = [s for s in candidates if s.load() == least]
        return tied[next(self._turn) % len(tied)]  # equals take turns

    async def upstream(self, state: NodeState, model_id: str) -> UpstreamEngine:
        """The upstream engine for `model_id` on `state`'s node (made on first use)."""
        engine = state.upstreams.get(model_id)
        if engine is None:
            options = UpstreamOptions(
                upstream_model=model_id,
                api_key=state.node.api_key,
                timeout=self.settings.upstream_timeout,
                connect_timeout=self.timeout,
                max_connections=max(16, state.node.slots * 4),
                retry_after=self.settings.retry_after,
            )
            engine = UpstreamEngine(model_id, state.node.url, options)
            engine.adopt(state.models.get(model_id, {}))
            await engine.start(discover=False)
            state.upstreams[model_id] = engine
        return engine

    # -- fair share --------------------------------------------------------------------------

    def _weights(self, database: Database) -> dict[int, float]:
        """Fair-share weights from each member's contribution over the window (member 0 is
        the caller of an open API, without key)."""
        since = db.now() - timedelta(hours=self.settings.contribution_window_hours)
        served = {r.member_id: r.tokens for r in ledger.contribution(database, since=since)}
        everyone = [0] + [m.id for m in members.list_members(database)]
        # A member added since this round has contributed nothing yet.
        self.default_weight = self.settings.fair_share_floor if any(served.values()) else 1.0
        return share_weights(served, everyone, self.settings.fair_share_floor)


async def _listing(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """A node's `/v1/models` by id (raises for transport errors, HTTP errors, bad JSON)."""
    response = await client.get("/models")
    response.raise_for_status()
    listed = response.json().get("data")
    return {str(m["id"]): m for m in listed or [] if isinstance(m, dict) and "id" in m}


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def _headers(api_key: str | None, instance: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if instance:
        headers[context.VIA_HEADER] = instance
    return headers


async def probe(url: str, api_key: str | None, timeout: float, instance: str = "") -> list[str]:
    """The model ids a would-be node at `url` lists now; `InvalidRequestError` (400, about
    ``url``) when it cannot be reached or gives no OpenAI model listing (508 from a URL that
    leads back to this server)."""
    headers = _headers(api_key, instance)
    async with httpx.AsyncClient(base_url=base_url(url), headers=headers, timeout=timeout) as c:
        try:
            return sorted(await _listing(c))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise InvalidRequestError(
                f"The gateway cannot list the models of the node at {url} "
                f"({_reason(exc)}): it must answer GET {base_url(url)}/models.",
                param="url",
            ) from None


def _violations(policy: OpennessPolicy, model_id: str) -> list[str]:
    from ..openness.policy import check
    from ..openness.report import build_report

    try:
        report = build_report(model_id)
    except (OSError, ValueError) as exc:
        return [f"no openness report could be built ({exc})"]
    return check(policy, report, model_id)


__all__ = ["NodePool", "NodeState"]
