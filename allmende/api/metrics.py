"""Prometheus metrics, one registry per app (no process globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from ..gateway.pool import NodePool

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class Series:
    """The metric children of one model on one endpoint: `labels()` looked up once, not on
    every request (it costs a lock and a few dict lookups per call)."""

    requests: Callable[[str], Any]  # status -> its counter child; use `count`
    latency: Any
    ttft: Any
    prompt_tokens: Any
    completion_tokens: Any
    in_flight: Any
    _by_status: dict[int, Any] = field(default_factory=dict)

    def count(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests(str(status))
        child.inc()


class Metrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], Series] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "allmende_requests",
            "API requests by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "allmende_request_duration_seconds",
            "Time from request to last byte, by model and endpoint.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "allmende_time_to_first_token_seconds",
            "Time from request to the first generated token, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "allmende_prompt_tokens", "Prompt tokens processed, by model.", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "allmende_completion_tokens", "Tokens generated, by model.", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "allmende_requests_in_flight", "Requests being served, by model.", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "allmende_queue_depth",
            "Requests waiting for an engine, by model.",
            ["model"],
            registry=r,
        )

        self.running = Gauge(
            "allmende_running_sequences",
            "Sequences an engine is generating right now (its batch), by model.",
            ["model"],
            registry=r,
        )
        self.batch_tokens = Gauge(
            "allmende_batch_tokens",
            "Tokens in the engine's most recent decode step, by model.",
            ["model"],
            registry=r,
        )

    def series(self, model: str, endpoint: str) -> Series:
        """The children of `model` on `endpoint` (models are ones the server serves, so the
        cache stays as small as the label sets themselves)."""
        found = self._series.get((model, endpoint))
        if found is None:
            found = self._series[(model, endpoint)] = Series(
                requests=lambda status: self.requests.labels(model, endpoint, status),
                latency=self.latency.labels(model, endpoint),
                ttft=self.ttft.labels(model),
                prompt_tokens=self.prompt_tokens.labels(model),
                completion_tokens=self.completion_tokens.labels(model),
                in_flight=self.in_flight.labels(model),
            )
        return found

    def track_engine(
        self,
        model: str,
        queue_depth: Callable[[], int],
        running: Callable[[], int],
        batch_tokens: Callable[[], int],
    ) -> None:
        self.queue_depth.labels(model=model).set_function(lambda: float(queue_depth()))
        self.running.labels(model=model).set_function(lambda: float(running()))
        self.batch_tokens.labels(model=model).set_function(lambda: float(batch_tokens()))

    def track_nodes(self, pool: NodePool) -> None:
        """Per contributed node: up or down, and requests outstanding (read at scrape time)."""
        self.registry.register(_NodeCollector(pool))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector(Collector):
    def __init__(self, pool: NodePool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "allmende_node_up", "Whether a contributed node is up (1) or down (0).", labels=["node"]
        )
        outstanding = GaugeMetricFamily(
            "allmende_node_outstanding",
            "Requests a contributed node is serving for this gateway.",
            labels=["node"],
        )
        for state in list(self.pool.nodes.values()):
            label = [f"{state.id}:{state.node.name}"]
            up.add_metric(label, 1.0 if state.up else 0.0)
            outstanding.add_metric(label, float(state.outstanding))
        yield up
        yield outstanding
