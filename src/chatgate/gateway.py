"""The gateway's shared state: everything a connection needs, built once at startup."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from chatgate.agents.loader import LoadedAgent
from chatgate.auth.tokens import TokenVerifier
from chatgate.broker.base import Broker
from chatgate.chat.runs import RunManager
from chatgate.e2e import E2EPolicy, decide_e2e
from chatgate.ops.health import HealthMonitor
from chatgate.ops.metrics import GatewayCollector, Metrics
from chatgate.ops.records import ConnectionRecords
from chatgate.settings import Settings
from chatgate.store.base import Store


@dataclass(slots=True)
class CloseStats:
    """How many closes of each code the server sent since it started."""

    counts: Counter[int] = field(default_factory=Counter)

    def record(self, code: int) -> None:
        """Count one close."""
        self.counts[code] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts keyed by code as a string, for JSON."""
        return {str(code): n for code, n in sorted(self.counts.items())}


@dataclass(slots=True)
class Gateway:
    """Collaborators shared by every connection of one process."""

    settings: Settings
    e2e: E2EPolicy
    verifier: TokenVerifier
    store: Store
    broker: Broker
    agent: LoadedAgent
    runs: RunManager
    health: HealthMonitor
    closes: CloseStats = field(default_factory=CloseStats)
    metrics: Metrics = field(default_factory=Metrics)
    records: ConnectionRecords = field(default_factory=ConnectionRecords)


def e2e_policy_for(settings: Settings) -> E2EPolicy:
    """The E2E policy of these settings, from the one tier decision."""
    return decide_e2e(
        settings.tier_decision,
        e2e_testing=settings.e2e_testing,
        disable_enhanced_detection=settings.disable_enhanced_e2e_detection,
        google_cloud_project=settings.google_cloud_project,
        k_service=settings.k_service,
    )


def build_gateway(settings: Settings, agent: LoadedAgent, store: Store, broker: Broker) -> Gateway:
    """Wire the collaborators together (raises ConfigError for unusable keys)."""
    e2e = e2e_policy_for(settings)
    metrics = Metrics()
    gateway = Gateway(
        settings=settings,
        e2e=e2e,
        verifier=TokenVerifier(settings, e2e),
        store=store,
        broker=broker,
        agent=agent,
        runs=RunManager(store, broker, agent, metrics=metrics),
        health=HealthMonitor({"store": store.ping, "broker": broker.ping}),
        metrics=metrics,
        records=ConnectionRecords(settings.connection_records),
    )
    _instrument(gateway)
    return gateway


def _instrument(gateway: Gateway) -> None:
    """Expose the gateway's counters, and time the store's commits and the broker's publishes."""
    metrics = gateway.metrics
    metrics.registry.register(
        GatewayCollector(
            metrics,
            gateway.records,
            up=gateway.health.is_up,
            runs_in_flight=gateway.runs.running,
        )
    )
    # Only backends that batch have a round trip worth timing (the SQL stores,
    # the Redis broker); the in-memory ones offer no hook.
    observe_writes = getattr(gateway.store, "observe_writes", None)
    if observe_writes is not None:
        observe_writes(metrics.observe_commit)
    observe_publishes = getattr(gateway.broker, "observe_publishes", None)
    if observe_publishes is not None:
        observe_publishes(metrics.observe_publish)
