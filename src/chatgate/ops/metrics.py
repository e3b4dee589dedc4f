"""Prometheus metrics: plain integers on the hot path, read at scrape time.

Calling a prometheus-client counter costs a lock and a few dictionary
look-ups; per frame, that would show in the instruction counts of a chat
turn. So what happens per frame or per event bumps an ``int`` on
:class:`Metrics` or on a connection's record, and :class:`GatewayCollector`
turns them into series when ``/metrics`` is scraped. Histograms are observed
only per run, per resume, per group commit and per broker round trip.

Each application has its own :class:`~prometheus_client.CollectorRegistry`
(never the global one), so that several gateways in one process (tests, an
embedding application) do not collide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatgate.ops.records import ConnectionRecords

RUN_OUTCOMES: Final = ("completed", "cancelled", "failed", "interrupted")
AGENT_ERROR_CODES: Final = frozenset(
    {
        "agent_failed",
        "run_interrupted",
        "model_auth_failed",
        "model_rate_limited",
        "model_unavailable",
        "model_bad_response",
    }
)
"""The codes labelled by name; any other an agent invents is counted as ``other``."""
OTHER: Final = "other"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


class Metrics:
    """The counters and histograms of one gateway; the hot path touches only its integers."""

    __slots__ = (
        "agent_errors",
        "broker_publish",
        "first_event",
        "registry",
        "resume_events",
        "resumes",
        "runs",
        "store_batch",
        "store_write",
        "text_deltas",
    )

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.agent_errors: Counter[str] = Counter()
        self.resumes = 0
        self.text_deltas = 0
        registry = self.registry = CollectorRegistry()
        self.first_event = Histogram(
            "chatgate_run_first_event_seconds",
            "From a user_message received to its run's first event published",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.resume_events = Histogram(
            "chatgate_resume_events",
            "Events replayed to a socket by one resume",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.store_write = Histogram(
            "chatgate_store_write_seconds",
            "Time of one group commit of the store",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        self.store_batch = Histogram(
            "chatgate_store_batch_items",
            "Writes in one group commit of the store",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.broker_publish = Histogram(
            "chatgate_broker_publish_seconds",
            "Time of one publishing round trip to the broker (a pipeline of events)",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)

    def run_ended(self, outcome: str) -> None:
        """Count a run that ended (one of :data:`RUN_OUTCOMES`)."""
        self.runs[outcome] += 1

    def agent_error(self, code: str) -> None:
        """Count an ``agent_error`` by its code; codes outside the known set are ``other``."""
        self.agent_errors[code if code in AGENT_ERROR_CODES else OTHER] += 1

    def resumed(self, events: int) -> None:
        """Count one resume served and how many events it replayed."""
        self.resumes += 1
        self.resume_events.observe(events)

    def observe_commit(self, seconds: float, items: int) -> None:
        """One group commit of the store: its time and its size."""
        self.store_write.observe(seconds)
        self.store_batch.observe(items)

    def observe_publish(self, seconds: float, _events: int) -> None:
        """One publishing round trip to the broker."""
        self.broker_publish.observe(seconds)

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format."""
        return generate_latest(self.registry)


class GatewayCollector(Collector):
    """Reads the gateway's integers into Prometheus series when ``/metrics`` is scraped."""

    def __init__(
        self,
        metrics: Metrics,
        records: ConnectionRecords,
        *,
        up: Callable[[str], bool],
        runs_in_flight: Callable[[], int],
    ) -> None:
        self._metrics = metrics
        self._records = records
        self._up = up
        self._runs_in_flight = runs_in_flight

    def collect(self) -> Iterator[Metric]:
        """Yield the current value of every series built from plain counters."""
        yield from self._connections()
        yield from self._runs()
        yield from self._dependencies()

    def _connections(self) -> Iterator[Metric]:
        records = self._records
        live = list(records.live())
        yield GaugeMetricFamily(
            "chatgate_connections_open", "WebSockets open now", value=records.open_count
        )
        yield CounterMetricFamily(
            "chatgate_connections", "Accepted WebSocket upgrades", value=records.accepted_total
        )
        closed = CounterMetricFamily(
            "chatgate_connections_closed",
            "Closed sockets by close code, whoever closed",
            labels=["code"],
        )
        for code, count in sorted(records.closed_by_code.items()):
            closed.add_metric([str(code)], count)
        yield closed
        refused = CounterMetricFamily(
            "chatgate_handshake_failures",
            "Sockets closed before their session was built, by the close's slug",
            labels=["reason"],
        )
        for reason, count in sorted(records.handshake_failures.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "chatgate_frames_received",
            "Frames received from clients",
            value=records.frames_in_closed + sum(r.frames_in for r in live),
        )
        yield CounterMetricFamily(
            "chatgate_frames_sent",
            "Frames sent to clients",
            value=records.frames_out_closed + sum(r.frames_out for r in live),
        )
        yield GaugeMetricFamily(
            "chatgate_send_queue_bytes",
            "Bytes waiting in every socket's send queue",
            value=sum(r.outbox.queued_bytes for r in live if r.outbox is not None),
        )

    def _runs(self) -> Iterator[Metric]:
        metrics = self._metrics
        runs = CounterMetricFamily("chatgate_runs", "Agent runs by outcome", labels=["outcome"])
        for outcome in RUN_OUTCOMES:
            runs.add_metric([outcome], metrics.runs[outcome])
        yield runs
        yield GaugeMetricFamily(
            "chatgate_runs_in_flight",
            "Agent runs going on in this process",
            value=self._runs_in_flight(),
        )
        errors = CounterMetricFamily(
            "chatgate_agent_errors", "agent_error events by code", labels=["code"]
        )
        for code, count in sorted(metrics.agent_errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield CounterMetricFamily(
            "chatgate_text_deltas", "agent_text_delta events streamed", value=metrics.text_deltas
        )
        yield CounterMetricFamily(
            "chatgate_resumes", "resume messages served", value=metrics.resumes
        )

    def _dependencies(self) -> Iterator[Metric]:
        for name in ("broker", "store"):
            yield GaugeMetricFamily(
                f"chatgate_{name}_up",
                f"1 when the {name} answers (the health monitor's last verdict), else 0",
                value=1 if self._up(name) else 0,
            )
