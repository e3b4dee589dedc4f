"""Which browsers and which names may reach the gateway.

``CHATGATE_ALLOWED_ORIGINS`` decides which pages may open a socket (the
``Origin`` header). ``CHATGATE_ALLOWED_HOSTS`` decides which names the server
answers to (the ``Host`` header): the same-host origin rule alone lets a
DNS-rebinding page through, since its origin and the ``Host`` it sends both
name the attacker's domain, which now resolves to this machine. Both are pure.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chatgate.tiers import listens_on_loopback_only

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names a loopback-only server answers to by default."""

_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names of the wildcard, not a bind


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


def host_name(host: str) -> str:
    """The name part of a ``Host`` header value: no port, no IPv6 brackets, lower case."""
    value = host.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def allowed_hosts(
    configured: tuple[str, ...] | None, bind_host: str, origins: tuple[str, ...] | None
) -> frozenset[str] | None:
    """The host names the server answers to, or None for any.

    ``configured`` is ``CHATGATE_ALLOWED_HOSTS`` (``*`` in it: any). Unset, a
    server bound to every interface answers to any name (it cannot know the
    names a load balancer gives it), and a server bound to one address answers
    to the loopback names, that address and the hosts of the allowed origins.
    """
    if configured is not None:
        if "*" in configured:
            return None
        return frozenset(host_name(name) for name in configured)
    bind = host_name(bind_host)
    if bind in _WILDCARD_BINDS:
        return None
    names = {*LOOPBACK_HOSTS, bind}
    for origin in origins or ():
        if origin != "*":
            netloc = urlsplit(origin).netloc
            if netloc:
                names.add(host_name(netloc))
    return frozenset(names)


def host_allowed(host: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request with this ``Host`` header is served (None allowed: any).

    A request without ``Host`` (HTTP/1.0) is served only when any host is.
    """
    if allowed is None:
        return True
    if host is None:
        return False
    name = host_name(host)
    # Every address of 127.0.0.0/8 is this machine, as 127.0.0.1 is.
    return name in allowed or ("127.0.0.1" in allowed and listens_on_loopback_only(name))
