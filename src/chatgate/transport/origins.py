"""The origin allow-list (``CHATGATE_ALLOWED_ORIGINS``)."""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...] | None) -> bool:
    """Whether a handshake from ``origin`` may proceed.

    No ``Origin`` header (non-browser clients) is allowed. With no allow-list,
    the origin must name the same host (and port) as the request's ``Host``;
    ``*`` in the list allows every origin.
    """
    if origin is None:
        return True
    if allowed is not None:
        normalized = origin.rstrip("/").lower()
        return "*" in allowed or any(normalized == a.rstrip("/").lower() for a in allowed)
    if host is None:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
