"""The alternative a Python team would pick: python-socketio on uvicorn, written idiomatically.

The same chat round trip as chatgate: the JWT is checked in ``connect`` (HS256,
``exp`` and ``sub`` required), each user's sockets share a room, a message is
acknowledged and the same agent runs, its events (the five types, and the
answer's text deltas) emitted to the user's room in chatgate's envelope.
Threads live in memory, as in chatgate's memory store. Same server stack as
chatgate: uvicorn, websockets-sansio, uvloop, httptools. Usage:
``BENCH_JWT_SECRET=... python -m bench.server_socketio --port P``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import socketio

from bench.bench_agent import BenchAgent
from bench.uvicorn_baseline import serve_on_port_argument

SECRET = os.environ.get("BENCH_JWT_SECRET", "")

sio = socketio.AsyncServer(async_mode="asgi")
agent = BenchAgent()


@dataclass
class Thread:
    """A conversation of one user, kept in memory."""

    owner: str
    history: list[dict[str, str]] = field(default_factory=list)
    last_event_id: int = 0


threads: dict[str, Thread] = {}


@sio.event
async def connect(sid: str, _environ: dict[str, Any], auth: Any) -> None:
    """Accept a socket whose ``auth`` carries a valid JWT; refuse it otherwise."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token:
        raise socketio.exceptions.ConnectionRefusedError("auth_required")
    try:
        claims = jwt.decode(
            token, SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError("auth_invalid") from exc
    await sio.save_session(sid, {"user_id": claims["sub"]})
    await sio.enter_room(sid, claims["sub"])


@sio.event
async def ping(sid: str, data: dict[str, Any]) -> None:
    """Answer ``ping`` with ``pong``."""
    await sio.emit("pong", {"id": data.get("id")}, to=sid)


def _envelope(
    kind: str, payload: dict[str, Any], thread_id: str, run_id: str, event_id: Any
) -> Any:
    return {
        "type": kind,
        "event_id": event_id,
        "thread_id": thread_id,
        "run_id": run_id,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "payload": payload,
    }


async def _emit(user_id: str, thread_id: str, run_id: str, kind: str, payload: Any) -> None:
    thread = threads[thread_id]
    thread.last_event_id += 1
    envelope = _envelope(kind, payload, thread_id, run_id, thread.last_event_id)
    await sio.emit(kind, envelope, room=user_id)


@sio.event
async def user_message(sid: str, data: dict[str, Any]) -> None:
    """Acknowledge the message, run the agent, emit its events to the user's room."""
    user_id = (await sio.get_session(sid))["user_id"]
    text = data["payload"]["text"]
    thread_id = data.get("thread_id") or f"th_{uuid.uuid4().hex}"
    thread = threads.setdefault(thread_id, Thread(user_id))
    if thread.owner != user_id:
        await sio.emit("error", {"code": "thread_not_found", "id": data.get("id")}, to=sid)
        return
    run_id = f"run_{uuid.uuid4().hex}"
    history = list(thread.history)
    thread.history.append({"role": "user", "content": text})
    ack = {
        "client_message_id": data.get("id"),
        "message_id": f"msg_{uuid.uuid4().hex}",
        "thread_id": thread_id,
        "run_id": run_id,
    }
    await sio.emit("message_ack", _envelope("message_ack", ack, thread_id, run_id, None), to=sid)
    await _emit(user_id, thread_id, run_id, "agent_started", {"agent": agent.name})
    answer: list[str] = []
    async for event in agent.run(history, text):
        payload = event["payload"]
        if event["type"] == "agent_text_delta":
            answer.append(payload["text"])
        elif event["type"] == "agent_completed":
            # As chatgate does: streamed text is the answer when the agent sends none.
            payload = {"text": "".join(answer), **payload, "status": "completed"}
            thread.history.append({"role": "assistant", "content": payload["text"]})
        await _emit(user_id, thread_id, run_id, event["type"], payload)


app = socketio.ASGIApp(sio)


def main() -> None:
    """Serve until SIGTERM."""
    serve_on_port_argument(app)


if __name__ == "__main__":
    main()
