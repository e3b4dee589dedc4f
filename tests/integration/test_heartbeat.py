"""A client that stops answering pings is closed 4101, never 1011."""

from __future__ import annotations

import asyncio

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri

from support import running_server


async def test_missing_pong_closes_4101_heartbeat_timeout() -> None:
    async with running_server(heartbeat_interval_s=0.2, heartbeat_timeout_s=0.3) as server:
        # A sans-I/O client driven by hand, so that pings can go unanswered.
        protocol = ClientProtocol(parse_uri(server.ws_url))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = protocol.connect()
        request.headers["Authorization"] = f"Bearer {server.token('alice')}"
        protocol.send_request(request)
        writer.write(b"".join(protocol.data_to_send()))
        close = None
        pings = 0
        while close is None:
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            protocol.receive_data(data)
            for event in protocol.events_received():
                opcode = getattr(event, "opcode", None)
                if opcode is Opcode.PING:
                    pings += 1
                    # Swallow the automatic pong: this client has gone silent.
                    protocol.data_to_send()
                elif opcode is Opcode.CLOSE:
                    close = protocol.close_rcvd
        writer.close()
    assert pings >= 1
    assert close is not None
    assert close.code == 4101
    assert close.reason.startswith("heartbeat_timeout: ")
