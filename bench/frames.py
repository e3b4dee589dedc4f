"""Frames on the wire: what the load generator sends, and what the baselines answer.

The raw picows and bare uvicorn baselines run no agent: they answer a chat
message with pre-encoded frames shaped exactly like chatgate's (the same
frames, envelope and payloads), so they measure the cost of moving the same bytes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

CHAT_TEXT = "what is 6*7?"
PARITY_TEXT = "lean"
"""The message of the parity round trip: the bench agent answers it with what
``bench/server_socketio_lean.py`` sends for any message (``LEAN_TEXT`` there)."""
STREAM_EVENTS = 100
"""Events per run in the event-delivery scenario (plus ack, started and completed)."""
ANSWER_DELTAS = 200
"""``agent_text_delta`` events per run in the streamed-answer scenario."""

_TS = "2026-01-01T00:00:00.000Z"
_THREAD = "th_0123456789abcdef01234567"
_RUN = "run_0123456789abcdef01234567"


def _frame(kind: str, payload: dict[str, Any], event_id: int | None = None) -> bytes:
    thread = _THREAD if kind != "connection_established" else None
    run = _RUN if kind not in {"connection_established", "pong"} else None
    return orjson.dumps(
        {
            "type": kind,
            "event_id": event_id,
            "thread_id": thread,
            "run_id": run,
            "ts": _TS,
            "payload": payload,
        }
    )


HELLO = _frame(
    "connection_established",
    {
        "connection_id": "conn_0123456789abcdef01234567",
        "user_id": "bench-user",
        "protocol": "chatgate.v1",
        "heartbeat_interval_s": 20.0,
        "max_message_bytes": 65536,
        "e2e": None,
        "server_time": _TS,
    },
)
_ACK = _frame(
    "message_ack",
    {
        "client_message_id": "1",
        "message_id": "msg_0123456789abcdef01234567",
        "thread_id": _THREAD,
        "run_id": _RUN,
    },
)
_MESSAGE = "msg_89abcdef0123456789abcdef"
_CALL = "call_0123456789abcdef01234567"
_ANSWER = ("6*7 ", "= ", "42")
CHAT_REPLY: tuple[bytes, ...] = (
    _ACK,
    _frame("agent_started", {"agent": "demo"}, 1),
    _frame("agent_thinking", {"text": "I will work out 6*7 with the calculator."}, 2),
    _frame(
        "tool_executing",
        {"tool_name": "calculator", "arguments": {"expression": "6*7"}, "tool_call_id": _CALL},
        3,
    ),
    _frame(
        "tool_completed",
        {"tool_name": "calculator", "result": 42, "duration_ms": 0.004, "tool_call_id": _CALL},
        4,
    ),
    # The demo agent streams its answer a word at a time.
    *(
        _frame(
            "agent_text_delta",
            {"message_id": _MESSAGE, "offset": sum(map(len, _ANSWER[:i])), "text": piece},
            5 + i,
        )
        for i, piece in enumerate(_ANSWER)
    ),
    _frame("agent_completed", {"text": "".join(_ANSWER), "status": "completed"}, 8),
)
"""What chatgate sends for ``what is 6*7?`` with the demo agent: the ack and eight events."""


def stream_reply(count: int) -> tuple[bytes, ...]:
    """The frames chatgate sends for a ``stream N`` run with the bench agent."""
    thinking = [_frame("agent_thinking", {"text": f"chunk {i}"}, i + 2) for i in range(count)]
    done = _frame(
        "agent_completed", {"text": f"streamed {count} events", "status": "completed"}, count + 2
    )
    return (_ACK, _frame("agent_started", {"agent": "bench"}, 1), *thinking, done)


_STREAM_REQUEST = re.compile(rb"stream (\d{1,6})")


def requested_stream(data: bytes) -> int | None:
    """The N of a ``stream N`` chat message, else None."""
    match = _STREAM_REQUEST.search(data)
    return int(match.group(1)) if match else None


# What clients send. chatgate and the two plain baselines read the JSON frames;
# the socket.io server reads the same objects inside Socket.IO EVENT packets.

_CHAT_MESSAGE = {"id": "1", "payload": {"text": CHAT_TEXT}}
_STREAM_MESSAGE = {"id": "1", "payload": {"text": f"stream {STREAM_EVENTS}"}}
_DELTAS_MESSAGE = {"id": "1", "payload": {"text": f"deltas {ANSWER_DELTAS}"}}
_PARITY_MESSAGE = {"id": "1", "payload": {"text": PARITY_TEXT}}


def json_request(kind: str, body: dict[str, Any]) -> bytes:
    """A chatgate client frame."""
    return orjson.dumps({"type": kind, **body})


def socketio_event(event: str, body: dict[str, Any]) -> bytes:
    """A Socket.IO EVENT packet in an Engine.IO MESSAGE packet: ``42["event",{...}]``."""
    return b"42" + orjson.dumps([event, body])


JSON_CHAT = json_request("user_message", _CHAT_MESSAGE)
JSON_ACK = b'{"type":"message_ack"'


def json_chat_in(thread_id: str) -> bytes:
    """The chat message, in an existing thread of the sender's."""
    return json_request("user_message", {**_CHAT_MESSAGE, "thread_id": thread_id})


JSON_STREAM = json_request("user_message", _STREAM_MESSAGE)
JSON_DELTAS = json_request("user_message", _DELTAS_MESSAGE)
JSON_PARITY = json_request("user_message", _PARITY_MESSAGE)
JSON_PING = json_request("ping", {"id": 1})
SIO_CHAT = socketio_event("user_message", _CHAT_MESSAGE)
SIO_STREAM = socketio_event("user_message", _STREAM_MESSAGE)
SIO_DELTAS = socketio_event("user_message", _DELTAS_MESSAGE)
SIO_PARITY = socketio_event("user_message", _PARITY_MESSAGE)
SIO_PING = socketio_event("ping", {"id": 1})
