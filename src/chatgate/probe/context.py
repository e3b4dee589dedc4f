"""What every scenario and check shares: target, credentials, limits, the HTTP client."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from chatgate.probe.credentials import Credentials
from chatgate.probe.http import Answer, Http
from chatgate.probe.outcome import Problem
from chatgate.probe.target import Target

DEFAULT_AUTH_TIMEOUT_S = 5.0
DEFAULT_RATE_LIMIT = 20
DEFAULT_MAX_MESSAGE_BYTES = 65536


@dataclass(slots=True)
class ProbeContext:
    """One run of the probe or the checks against one deployment."""

    target: Target
    credentials: Credentials
    http: Http
    timeout: float = 10.0
    origin: str | None = None
    admin_token: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None
    connections: list[str] = field(default_factory=list)
    """The ``connection_id`` of every socket that reached ``connection_established``, in order."""
    _diagnostics: Answer | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Every secret a report must never show."""
        return [*self.credentials.secrets(), *([self.admin_token] if self.admin_token else [])]

    async def diagnostics(self) -> Answer:
        """``GET /diagnostics`` (with the admin token when given), read once per run.

        Raises:
            Problem: no HTTP answer at all.
        """
        if self._diagnostics is None:
            self._diagnostics = await self.http.get("/diagnostics", token=self.admin_token)
        return self._diagnostics

    async def limits(self) -> dict[str, Any]:
        """The server's limits from ``/diagnostics``, or an empty dict when it cannot say."""
        try:
            answer = await self.diagnostics()
        except Problem:
            return {}
        limits = answer.json_object.get("limits") if answer.status == 200 else None  # noqa: PLR2004 - HTTP OK
        return limits if isinstance(limits, dict) else {}

    async def limit(self, name: str, default: float) -> float:
        """One limit by its settings name (``auth_timeout_s``...), or ``default``."""
        value = (await self.limits()).get(name)
        return (
            float(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else default
        )
