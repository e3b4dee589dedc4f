"""Connection records: every socket's story, from its upgrade to some minutes after its close.

A :class:`ConnectionRecord` is made when a socket arrives and carries its
counters for its whole life: the connection holds a reference and bumps plain
integers on it, so nothing is looked up per frame. At the close it moves from
the live table to a bounded table of closed records (the last
``CHATGATE_CONNECTION_RECORDS`` of the process), and one INFO line with the
same fields is logged. ``GET /diagnostics/connections/{connection_id}`` serves
either table; a record pushed out of the closed one is forgotten (404).

The totals Prometheus reads (opened, closed by code, refused handshakes,
frames) live on :class:`ConnectionRecords` and are summed at scrape time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from chatgate.closecodes import CLOSE_CODES, CloseCode, close_reason
from chatgate.logs import get_logger, redact

log = get_logger("chatgate.ops.records")

DEFAULT_KEEP = 10_000
USER_AGENT_CHARS = 256
SERVER_CLOSE = "chatgate.server_close"
"""Scope key the WebSocket protocol sets to the code of a close it sent on its own
(heartbeat timeout, oversized frame, shutdown): the app then learns of the close
as a disconnect and must not take it for the client's."""

CLIENT_LEFT = "client_left"
"""The handshake-failure reason of a client that went away before its session was built."""


class QueueSize(Protocol):
    """What a record reads of its socket's send queue (the outbox)."""

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written."""


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reason_for(code: int) -> str:
    """The bare slug of a code of the table (a close that came without a reason)."""
    return close_reason(CloseCode(code)) if code in CLOSE_CODES else ""


class ConnectionRecord:
    """One connection's record; the socket updates its counters in place."""

    # One per socket, live or recently closed: slots, and no per-record dict.
    __slots__ = (
        "auth_method",
        "close_code",
        "close_reason",
        "closed_at",
        "closed_by",
        "connection_id",
        "frames_in",
        "frames_out",
        "opened_at",
        "outbox",
        "remote",
        "runs",
        "user_agent",
        "user_id",
    )

    def __init__(self, connection_id: str, remote: str | None, opened_at: float) -> None:
        self.connection_id = connection_id
        self.remote = remote
        self.opened_at = opened_at
        self.user_id: str | None = None
        self.auth_method: str | None = None
        self.user_agent: str | None = None
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: str | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.runs = 0
        # The live socket's send queue, read at scrape time; dropped at the close.
        self.outbox: QueueSize | None = None

    def set_user_agent(self, value: str | None) -> None:
        """Keep the upgrade's ``User-Agent``, cut to a bounded length."""
        self.user_agent = None if value is None else value[:USER_AGENT_CHARS]

    def closing(self, code: int, reason: str, by: str) -> None:
        """Note how the socket closed; the first close noted wins."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self.closed_by = by
        self.closed_at = time.time()

    def to_json(self) -> dict[str, Any]:
        """The record as ``/diagnostics/connections/{id}`` and the close log line show it."""
        agent = self.user_agent
        reason = self.close_reason
        return {
            "connection_id": self.connection_id,
            "user_id": self.user_id,
            "opened_at": _iso(self.opened_at),
            "closed_at": _iso(self.closed_at),
            "close_code": self.close_code,
            # A client's own close reason is its text: scrubbed like any log line.
            "close_reason": None if reason is None else redact(reason),
            "closed_by": self.closed_by,
            "auth_method": self.auth_method,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "runs": self.runs,
            "remote": self.remote,
            "user_agent": None if agent is None else redact(agent),
        }


class ConnectionRecords:
    """The live records and the last ``keep`` closed ones of this process, with their totals."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self._keep = keep
        self._live: dict[str, ConnectionRecord] = {}
        self._closed: OrderedDict[str, ConnectionRecord] = OrderedDict()
        self.accepted_total = 0
        self.closed_by_code: Counter[int] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        # Frames of closed connections; the live ones are summed at scrape time.
        self.frames_in_closed = 0
        self.frames_out_closed = 0

    def open(self, connection_id: str, remote: str | None) -> ConnectionRecord:
        """Start the record of a socket that just arrived."""
        record = ConnectionRecord(connection_id, remote, time.time())
        self._live[connection_id] = record
        return record

    def close(self, record: ConnectionRecord, *, authenticated: bool) -> None:
        """Move a finished socket's record to the closed table and log its close.

        A socket whose close was never seen (the peer vanished) is recorded as
        1006, closed by the client. ``authenticated`` says whether its session
        was built; one that was not is a handshake failure, counted by reason.
        """
        if self._live.pop(record.connection_id, None) is None:
            return
        record.closing(1006, "", "client")
        record.outbox = None
        code = record.close_code
        assert code is not None  # noqa: S101 - set just above
        self.closed_by_code[code] += 1
        self.frames_in_closed += record.frames_in
        self.frames_out_closed += record.frames_out
        if not authenticated:
            self.handshake_failures[_failure_reason(record)] += 1
        closed = self._closed
        closed[record.connection_id] = record
        while len(closed) > self._keep:
            closed.popitem(last=False)
        # The fields cost more than the rest of the close: build them only for a line written.
        if log.is_enabled_for(logging.INFO):
            log.info("connection closed", **record.to_json())

    def get(self, connection_id: str) -> ConnectionRecord | None:
        """The record of a live or recently closed connection, or None once forgotten."""
        return self._live.get(connection_id) or self._closed.get(connection_id)

    def live(self) -> Iterator[ConnectionRecord]:
        """The records of the sockets open now."""
        return iter(tuple(self._live.values()))

    @property
    def open_count(self) -> int:
        """How many sockets are open now."""
        return len(self._live)


def _failure_reason(record: ConnectionRecord) -> str:
    """A bounded label for why a handshake failed: the slug of the server's close."""
    code = record.close_code
    if record.closed_by != "server" or code is None:
        return CLIENT_LEFT
    entry = CLOSE_CODES.get(CloseCode(code)) if code in CLOSE_CODES else None
    return entry.slug if entry is not None else "other"
