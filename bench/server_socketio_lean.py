"""python-socketio written lean: the cheapest chat round trip a Socket.IO user would write.

The JWT is verified in ``connect`` (HS256, ``exp`` and ``sub`` required) and
each socket joins its user's room; a chat message is acknowledged to the
socket, then five events (``agent_started``, ``agent_thinking``,
``tool_executing``, ``tool_completed``, ``agent_completed``) in chatgate's
envelope are emitted straight to the room: no agent, no session store, no
history, nothing persisted. ``stream N`` emits N ``agent_thinking`` events
between the first and the last. Same server stack as chatgate: uvicorn,
websockets-sansio, uvloop, httptools. Usage:
``BENCH_JWT_SECRET=... python -m bench.server_socketio_lean --port P``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import jwt
import socketio

from bench.frames import requested_stream
from bench.uvicorn_baseline import serve_on_port_argument

SECRET = os.environ.get("BENCH_JWT_SECRET", "")
_TS = "2026-01-01T00:00:00.000Z"
_THINKING = {"text": "I will work out 6*7 with the calculator."}
_TOOL = {"tool_name": "calculator", "arguments": {"expression": "6*7"}}
_RESULT = {"tool_name": "calculator", "result": 42, "duration_ms": 0.004}
_ANSWER = {"text": "6*7 = 42", "status": "completed"}

sio = socketio.AsyncServer(async_mode="asgi")
users: dict[str, str] = {}
"""The user of each socket id, set in ``connect``."""


@sio.event
async def connect(sid: str, _environ: dict[str, Any], auth: Any) -> None:
    """Accept a socket whose ``auth`` carries a valid JWT, into its user's room."""
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        claims = jwt.decode(
            token or "", SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError("auth_invalid") from exc
    users[sid] = claims["sub"]
    await sio.enter_room(sid, claims["sub"])


@sio.event
async def disconnect(sid: str, *_reason: Any) -> None:
    """Forget the socket's user."""
    users.pop(sid, None)


@sio.event
async def ping(sid: str, data: dict[str, Any]) -> None:
    """Answer ``ping`` with ``pong``."""
    await sio.emit("pong", {"id": data.get("id")}, to=sid)


@sio.event
async def user_message(sid: str, data: dict[str, Any]) -> None:
    """Acknowledge the message, then emit the run's events to the user's room."""
    room = users[sid]
    thread_id = data.get("thread_id") or f"th_{uuid.uuid4().hex}"
    run_id = f"run_{uuid.uuid4().hex}"

    def envelope(kind: str, payload: dict[str, Any], event_id: int | None) -> dict[str, Any]:
        return {
            "type": kind,
            "event_id": event_id,
            "thread_id": thread_id,
            "run_id": run_id,
            "ts": _TS,
            "payload": payload,
        }

    ack = {
        "client_message_id": data.get("id"),
        "message_id": f"msg_{uuid.uuid4().hex}",
        "thread_id": thread_id,
        "run_id": run_id,
    }
    await sio.emit("message_ack", envelope("message_ack", ack, None), to=sid)
    count = requested_stream(data["payload"]["text"].encode())
    middle: list[tuple[str, dict[str, Any]]]
    if count is None:
        middle = [
            ("agent_thinking", _THINKING),
            ("tool_executing", _TOOL),
            ("tool_completed", _RESULT),
        ]
    else:
        middle = [("agent_thinking", {"text": f"chunk {i}"}) for i in range(count)]
    events = [("agent_started", {"agent": "lean"}), *middle, ("agent_completed", _ANSWER)]
    for event_id, (kind, payload) in enumerate(events, start=1):
        await sio.emit(kind, envelope(kind, payload, event_id), room=room)


app = socketio.ASGIApp(sio)


def main() -> None:
    """Serve until SIGTERM."""
    serve_on_port_argument(app)


if __name__ == "__main__":
    main()
