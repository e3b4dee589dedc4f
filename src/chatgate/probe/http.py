"""The HTTP endpoints beside the socket: health, readiness, diagnostics, history."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatgate.probe.outcome import Problem, fail
from chatgate.probe.target import Target


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP response, its body decoded when it is JSON."""

    status: int
    json: Any
    text: str = field(repr=False)
    elapsed_s: float

    @property
    def json_object(self) -> dict[str, Any]:
        """The body when it is a JSON object, else an empty dict."""
        return self.json if isinstance(self.json, dict) else {}


def _cause_of(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "dns_failure"
        if isinstance(seen, ssl.SSLError):
            return "tls_error"
        if isinstance(seen, ConnectionRefusedError):
            return "connection_refused"
        seen = seen.__cause__ or seen.__context__
    return "network_error"


class Http:
    """GET requests to the deployment's HTTP base, never through an environment proxy."""

    def __init__(
        self, target: Target, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=target.http_base,
            timeout=timeout,
            verify=ssl_context if ssl_context is not None else True,
            trust_env=False,
            follow_redirects=False,
        )

    async def get(self, path: str, *, token: str | None = None) -> Answer:
        """GET ``path``; ``token`` goes in ``Authorization: Bearer``.

        Raises:
            Problem: no HTTP answer (DNS, refused, TLS, timeout).
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        try:
            response = await self._client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise fail(
                _cause_of(exc),
                f"GET {path}: {type(exc).__name__} ({exc})",
                elapsed_s=time.monotonic() - started,
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body, response.text, time.monotonic() - started)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


__all__ = ["Answer", "Http", "Problem"]
