"""Frames of the chat protocol: parsing client frames, encoding server frames.

Pure: no I/O. A client frame becomes one of the typed messages below or a
:class:`ProtocolViolation` naming the ``error`` code the socket answers with.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from chatgate.models import StoredEvent

MAX_ID_CHARS = 128
MAX_INTEGER = 2**63 - 1
"""The largest integer a client may send: every integer lands in a signed 64-bit column."""


class ErrorCode(enum.StrEnum):
    """Codes of ``error`` frames, which keep the socket open."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    THREAD_NOT_FOUND = "thread_not_found"
    RATE_LIMITED = "rate_limited"
    RUN_NOT_FOUND = "run_not_found"


class ProtocolViolation(Exception):
    """A client frame the server cannot act on; answered with an ``error`` frame."""

    def __init__(self, code: ErrorCode, message: str, client_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id


# Parsed client messages are values, slotted but not frozen: see chatgate.models.


@dataclass(slots=True)
class Auth:
    """``{"type": "auth", "token": ...}``."""

    token: str


@dataclass(slots=True)
class UserMessage:
    """``{"type": "user_message", "id", "thread_id"?, "payload": {"text"}}``."""

    id: str | int | None
    thread_id: str | None
    text: str


@dataclass(slots=True)
class Resume:
    """``{"type": "resume", "thread_id", "after_event_id"}``."""

    id: str | int | None
    thread_id: str
    after_event_id: int


@dataclass(slots=True)
class Cancel:
    """``{"type": "cancel", "run_id"}``."""

    id: str | int | None
    run_id: str


@dataclass(slots=True)
class TokenRefresh:
    """``{"type": "token_refresh", "token"}``."""

    id: str | int | None
    token: str


@dataclass(slots=True)
class Ping:
    """``{"type": "ping"}``."""

    id: str | int | None


ClientMessage = Auth | UserMessage | Resume | Cancel | TokenRefresh | Ping


def _client_id(frame: dict[str, Any]) -> str | int | None:
    value = frame.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "id must be a string or an integer")
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, f"id longer than {MAX_ID_CHARS}")
        if "\x00" in value:
            raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "id must not contain NUL")
    elif not -MAX_INTEGER <= value <= MAX_INTEGER:
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "id out of the 64-bit range")
    return value


def _string(frame: dict[str, Any], key: str, client_id: str | int | None) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolViolation(
            ErrorCode.INVALID_MESSAGE, f"{key} must be a non-empty string", client_id
        )
    if key != "token" and len(value) > MAX_ID_CHARS:
        raise ProtocolViolation(
            ErrorCode.INVALID_MESSAGE, f"{key} longer than {MAX_ID_CHARS}", client_id
        )
    _refuse_nul(value, key, client_id)
    return value


def _refuse_nul(value: str, key: str, client_id: str | int | None) -> None:
    # PostgreSQL text cannot hold NUL: refused here, not failing in the store.
    if "\x00" in value:
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, f"{key} must not contain NUL", client_id)


def _user_message(frame: dict[str, Any], cid: str | int | None) -> UserMessage:
    thread_id = frame.get("thread_id")
    if thread_id is not None:
        thread_id = _string(frame, "thread_id", cid)
    payload = frame.get("payload")
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ProtocolViolation(
            ErrorCode.INVALID_MESSAGE, "payload.text must be a non-empty string", cid
        )
    _refuse_nul(text, "payload.text", cid)
    return UserMessage(cid, thread_id, text)


def _resume(frame: dict[str, Any], cid: str | int | None) -> Resume:
    after = frame.get("after_event_id", 0)
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_INTEGER:
        raise ProtocolViolation(
            ErrorCode.INVALID_MESSAGE, "after_event_id must be an integer from 0 to 2^63-1", cid
        )
    return Resume(cid, _string(frame, "thread_id", cid), after)


def parse_client_frame(text: str) -> ClientMessage:
    """Parse one client text frame.

    Raises:
        ProtocolViolation: invalid JSON, a frame that is not an object, an
            unknown type, or fields of the wrong shape.
    """
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(ErrorCode.INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "frame must be a JSON object")
    cid = _client_id(frame)
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolViolation(ErrorCode.INVALID_MESSAGE, "type must be a string", cid)
    match kind:
        case "user_message":
            return _user_message(frame, cid)
        case "ping":
            return Ping(cid)
        case "resume":
            return _resume(frame, cid)
        case "cancel":
            return Cancel(cid, _string(frame, "run_id", cid))
        case "token_refresh":
            return TokenRefresh(cid, _string(frame, "token", cid))
        case "auth":
            return Auth(_string(frame, "token", cid))
        case _:
            shown = kind[:32]
            raise ProtocolViolation(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}", cid)


class _Clock:
    """Formats the current time, formatting the date and time of day once per second.

    Every event carries a timestamp; ``strftime`` was a tenth of the server's
    time on the event path.
    """

    __slots__ = ("last", "millisecond", "prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.millisecond = -1
        self.prefix = ""
        self.last = ""

    def now(self) -> str:
        millisecond = int(time.time() * 1000)
        if millisecond == self.millisecond:
            # Under load many events share a millisecond: one string for all.
            return self.last
        return self.at(millisecond)

    def at(self, millisecond: int) -> str:
        """Format ``millisecond`` (since the epoch), a later one than the last formatted."""
        second = millisecond // 1000
        if second != self.second:
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self.second = second
        self.millisecond = millisecond
        self.last = f"{self.prefix}{millisecond % 1000:03d}Z"
        return self.last


_CLOCK = _Clock()


def timestamp(now: datetime | None = None) -> str:
    """UTC time (now, or ``now``) as ``2026-01-01T00:00:00.000Z``."""
    if now is None:
        # _Clock.now, inlined: a turn asks the time a dozen times.
        millisecond = int(time.time() * 1000)
        clock = _CLOCK
        return clock.last if millisecond == clock.millisecond else clock.at(millisecond)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def encode(
    kind: str,
    payload: dict[str, Any],
    *,
    thread_id: str | None = None,
    run_id: str | None = None,
    event_id: int | None = None,
    ts: str | None = None,
) -> bytes:
    """Encode a server frame in the common envelope, as the UTF-8 text frame's payload.

    Frames stay bytes from here to the socket: the send path writes them as they are.
    """
    return orjson.dumps(
        {
            "type": kind,
            "event_id": event_id,
            "thread_id": thread_id,
            "run_id": run_id,
            "ts": ts or timestamp(),
            "payload": payload,
        }
    )


def event_frame(event: StoredEvent) -> bytes:
    """Encode a stored event; live delivery and ``resume`` send the same bytes.

    The envelope of :func:`encode`, built here without its keyword arguments
    since every event passes through: a differential test holds the two to the
    same bytes.
    """
    return orjson.dumps(
        {
            "type": event.type,
            "event_id": event.event_id,
            "thread_id": event.thread_id,
            "run_id": event.run_id,
            "ts": event.ts,
            "payload": event.payload,
        }
    )


def error_frame(
    code: ErrorCode, message: str, correlation_id: str, client_id: str | int | None
) -> bytes:
    """Encode an ``error`` frame; the socket stays open."""
    payload: dict[str, Any] = {
        "code": code.value,
        "message": message,
        "correlation_id": correlation_id,
    }
    if client_id is not None:
        payload["id"] = client_id
    return encode("error", payload)
