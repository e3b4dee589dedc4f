"""The limit reference: a raw picows server on uvloop, no framework, no auth, no agent.

On connect it sends a greeting shaped like ``connection_established``; it
answers a chat message with chatgate's six frames, ``stream N`` with the
frames of an N-event run, and echoes anything else. Usage:
``python -m bench.server_picows --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from functools import cache

import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from bench.frames import CHAT_REPLY, HELLO, requested_stream, stream_reply

_TEXT = WSMsgType.TEXT


@cache
def _stream(count: int) -> tuple[bytes, ...]:
    return stream_reply(count)


class _Reply(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(_TEXT, HELLO)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind is not _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if b"user_message" not in data:
            transport.send(_TEXT, data)
            return
        count = requested_stream(data)
        for reply in CHAT_REPLY if count is None else _stream(count):
            transport.send(_TEXT, reply)


def _listener(_: WSUpgradeRequest) -> WSListener:
    return _Reply()


async def _serve(port: int) -> None:
    server = await ws_create_server(_listener, "127.0.0.1", port, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
