"""Binding the listening sockets before anything else happens.

``chatgate serve`` binds its port itself, before it starts the store or ends
any run: a second process started on a port in use must stop there, having
touched nothing (uvicorn would run the application's startup first and bind
after).
"""

from __future__ import annotations

import errno
import socket

_BACKLOG = 2048


class PortUnavailable(Exception):
    """The port cannot be listened on; the message is the one line to print."""


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address of ``host`` at ``port``.

    Raises:
        PortUnavailable: the port is in use, or not ours to bind.
    """
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {host}: {exc.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            # As uvicorn does: a port left in TIME_WAIT by the previous process
            # is free; one another process listens on is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise PortUnavailable(_why(host, port, exc)) from None
    return bound


def _why(host: str, port: int, exc: OSError) -> str:
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} is already in use (another chatgate serve?); "
            "stop it or choose another port (CHATGATE_PORT or --port)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {where}: {exc.strerror}"
