"""The framework floor: a bare Starlette WebSocket endpoint on uvicorn, no auth, no agent.

The same server stack as chatgate (uvicorn, websockets-sansio, uvloop,
httptools), written as a Starlette user writes an echo endpoint; it answers
like the picows baseline. Usage: ``python -m bench.server_uvicorn --port P``.
"""

from __future__ import annotations

from functools import cache

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.frames import CHAT_REPLY, HELLO, requested_stream, stream_reply
from bench.uvicorn_baseline import serve_on_port_argument

_HELLO = HELLO.decode()
_CHAT = tuple(frame.decode() for frame in CHAT_REPLY)


@cache
def _stream(count: int) -> tuple[str, ...]:
    return tuple(frame.decode() for frame in stream_reply(count))


async def endpoint(websocket: WebSocket) -> None:
    """Greet, then answer every text frame."""
    await websocket.accept()
    await websocket.send_text(_HELLO)
    try:
        while True:
            text = await websocket.receive_text()
            if "user_message" not in text:
                await websocket.send_text(text)
                continue
            count = requested_stream(text.encode())
            for reply in _CHAT if count is None else _stream(count):
                await websocket.send_text(reply)
    except WebSocketDisconnect:
        return


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])


def main() -> None:
    """Serve until SIGTERM."""
    serve_on_port_argument(app)


if __name__ == "__main__":
    main()
