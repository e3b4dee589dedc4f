"""The probe's five scenarios, in order: connection, authentication, E2E, chat, resume.

Each scenario returns a one-line summary and records what it measured in
``details``; it raises :class:`~chatgate.probe.outcome.Problem` when it
reproduces a failure and :class:`~chatgate.probe.outcome.Skip` when it cannot run.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chatgate.client.transport import PROTOCOL
from chatgate.probe import dialogue, e2e_mode, verify
from chatgate.probe.context import ProbeContext
from chatgate.probe.credentials import expected_user
from chatgate.probe.outcome import Skip, fail
from chatgate.probe.wire import Wire

NO_CREDENTIAL = "no credential: give --token, or --e2e-key to mint a test token"


@dataclass(slots=True)
class ProbeState:
    """What earlier scenarios learned, for the later ones."""

    connected: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


async def _resolve(ctx: ProbeContext) -> tuple[list[str], float]:
    target, started = ctx.target, time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(ctx.timeout):
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise fail("dns_failure", f"resolving {target.host}: {exc.strerror}") from None
    except TimeoutError:
        raise fail("timeout", f"resolving {target.host}: no answer in {ctx.timeout:g} s") from None
    return sorted({str(info[4][0]) for info in infos}), time.monotonic() - started


async def _tcp_and_tls(ctx: ProbeContext, address: str) -> dict[str, Any]:
    target, started = ctx.target, time.monotonic()
    step = f"TCP to {address}:{target.port}"
    try:
        async with asyncio.timeout(ctx.timeout):
            _, writer = await asyncio.open_connection(address, target.port)
    except ConnectionRefusedError:
        raise fail("connection_refused", f"{step}: refused") from None
    except TimeoutError:
        raise fail("timeout", f"{step}: no answer in {ctx.timeout:g} s") from None
    except OSError as exc:
        raise fail("network_error", f"{step}: {exc.strerror or exc}") from None
    measured: dict[str, Any] = {"tcp_ms": _ms(time.monotonic() - started)}
    try:
        if target.secure:
            measured.update(await _tls(ctx, writer))
    finally:
        writer.close()
    return measured


async def _tls(ctx: ProbeContext, writer: asyncio.StreamWriter) -> dict[str, Any]:
    started = time.monotonic()
    context = ctx.ssl_context or ssl.create_default_context()
    try:
        async with asyncio.timeout(ctx.timeout):
            await writer.start_tls(context, server_hostname=ctx.target.host)
    except ssl.SSLCertVerificationError as exc:
        raise fail("tls_error", f"TLS: certificate rejected: {exc.verify_message}") from None
    except (ssl.SSLError, ConnectionResetError) as exc:
        raise fail("tls_error", f"TLS: {getattr(exc, 'reason', None) or exc}") from None
    except TimeoutError:
        raise fail("timeout", f"TLS: no handshake in {ctx.timeout:g} s") from None
    tls = writer.get_extra_info("ssl_object")
    cert = tls.getpeercert() if tls is not None else None
    return {
        "tls_ms": _ms(time.monotonic() - started),
        "tls_version": tls.version() if tls is not None else None,
        "certificate_expires": cert.get("notAfter") if isinstance(cert, dict) else None,
    }


async def connection(ctx: ProbeContext, state: ProbeState) -> str:
    """DNS, TCP, TLS, the HTTP upgrade and the subprotocol."""
    addresses, dns_s = await _resolve(ctx)
    measured = {"addresses": addresses, "dns_ms": _ms(dns_s)}
    measured.update(await _tcp_and_tls(ctx, addresses[0]))
    async with await Wire.upgrade(ctx, doing="upgrading to a WebSocket") as wire:
        selected = wire.ws.subprotocol
        measured.update(upgrade_ms=_ms(wire.upgrade_s), subprotocol=selected)
    state.details["connection"] = measured
    if selected != PROTOCOL:
        raise fail(
            "subprotocol_not_selected", f"offered {PROTOCOL}, the server selected {selected!r}"
        )
    state.connected = True
    tls = f", TLS {measured['tls_version']}" if "tls_version" in measured else ""
    return (
        f"{ctx.target.host} is {', '.join(addresses)}; TCP {measured['tcp_ms']} ms{tls}; "
        f"101 upgrade in {measured['upgrade_ms']} ms; subprotocol {selected}"
    )


async def authentication(ctx: ProbeContext, state: ProbeState) -> str:
    """A header token gets ``connection_established`` for its user."""
    token = ctx.credentials.primary()
    if token is None:
        raise Skip(NO_CREDENTIAL)
    async with await Wire.open(ctx, token, doing="authenticating (Authorization header)") as wire:
        hello = wire.established
    user, expected = hello.get("user_id"), expected_user(token)
    state.details["authentication"] = {
        "user_id": user,
        "connection_id": hello.get("connection_id"),
        "upgrade_ms": _ms(wire.upgrade_s),
        "e2e": hello.get("e2e"),
    }
    if expected is not None and user != expected:
        raise fail("wrong_user", f"the token's subject is {expected!r}, the session's {user!r}")
    return f"connection_established for {user} ({hello.get('connection_id')})"


async def e2e_detection(ctx: ProbeContext, state: ProbeState) -> str:
    """``/diagnostics`` says whether E2E mode is on; a test token is accepted exactly then."""
    tier, enabled = await e2e_mode.server_state(ctx)
    state.details["e2e_detection"] = {"tier": tier, "enabled": enabled}
    if tier is None:
        shown = "protected (production tier)"
    else:
        shown = f"tier {tier}, E2E {'on' if enabled else 'off'}"
    if not ctx.credentials.can_mint:
        return f"/diagnostics: {shown}; no --e2e-key, so no test token was tried"
    token = ctx.credentials.minted(ctx.credentials.user)
    accepted, refusal = await e2e_mode.try_test_token(ctx, token)
    state.details["e2e_detection"]["test_token_accepted"] = accepted
    verdict = e2e_mode.verdict(tier, enabled, accepted, refusal)
    return f"/diagnostics: {shown}; a test token was {verdict}"


async def chat_round_trip(ctx: ProbeContext, state: ProbeState) -> str:
    """The question gets ``message_ack`` and the five agent events, in order."""
    token = ctx.credentials.primary()
    if token is None:
        raise Skip(NO_CREDENTIAL)
    started = time.monotonic()
    async with await Wire.open(ctx, token, doing="opening a socket for the round trip") as wire:
        ack, events = await dialogue.round_trip(wire, "probe-chat")
    verify.five_events(events)
    verify.streamed_text(events)
    thread_id, run_id = dialogue.ack_ids(ack)
    state.details["chat_round_trip"] = {
        "thread_id": thread_id,
        "run_id": run_id,
        "events": [event.get("type") for event in events],
        "round_trip_ms": _ms(time.monotonic() - started),
    }
    took = state.details["chat_round_trip"]["round_trip_ms"]
    return f"message_ack and {len(events)} events in {took} ms"


async def resume(ctx: ProbeContext, state: ProbeState) -> str:
    """Disconnect after ``agent_started``, reconnect, resume: every missed event, once."""
    token = ctx.credentials.primary()
    if token is None:
        raise Skip(NO_CREDENTIAL)
    thread_id, after, events = await dialogue.leave_and_resume(ctx, token)
    verify.resumed(events, after)
    # The socket left at agent_started, before any text: the resume carries the whole answer.
    verify.streamed_text(events)
    state.details["resume"] = {
        "thread_id": thread_id,
        "after_event_id": after,
        "event_ids": [event.get("event_id") for event in events],
    }
    return f"left after event {after}; the resume gave events {verify.id_span(events)}"


Scenario = Callable[[ProbeContext, ProbeState], Awaitable[str]]

SCENARIOS: tuple[tuple[str, str, Scenario], ...] = (
    ("1", "connection", connection),
    ("2", "authentication", authentication),
    ("3", "e2e_detection", e2e_detection),
    ("4", "chat_round_trip", chat_round_trip),
    ("5", "resume", resume),
)
"""The scenarios in the order they run: (number, name, function)."""
