"""The latency budgets the checks hold a deployment to (P1-10 and P1-22)."""

from __future__ import annotations

from dataclasses import dataclass

P95_STARTED_MS = 500.0
P95_COMPLETED_MS = 3000.0


@dataclass(frozen=True, slots=True)
class Budgets:
    """The latency budgets of P1-22, and the P1-10 pong budget."""

    started_ms: float = P95_STARTED_MS
    completed_ms: float = P95_COMPLETED_MS
    round_trips: int = 20
    pong_ms: float = 1000.0
