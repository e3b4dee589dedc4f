"""A client that stops reading overflows its send queue and is closed 4102."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from chatgate.closecodes import CloseCode

from support import established, frames_until_close, running_server, send_json

FLOOD_EVENTS = 400
FLOOD_TEXT = "x" * 16_384
flood_done = asyncio.Event()


class Flood:
    """Streams far more than a send queue holds, then finishes."""

    name = "flood"

    async def run(self, history: Sequence[Any], text: str) -> AsyncIterator[dict[str, Any]]:
        for _ in range(FLOOD_EVENTS):
            yield {"type": "agent_thinking", "payload": {"text": FLOOD_TEXT}}
        # Set before the last yield: the gateway closes the iterator after agent_completed.
        flood_done.set()
        yield {"type": "agent_completed", "payload": {"text": "done"}}


async def test_slow_consumer_closes_4102() -> None:
    flood_done.clear()
    overrides = {"agent": "test_slow_consumer:Flood", "send_queue_bytes": 256 * 1024}
    # A small client buffer and no reading: the server's queue has to take the load.
    async with (
        running_server(**overrides) as server,
        server.connect(server.token("alice"), max_queue=1, max_size=None) as ws,
    ):
        await established(ws)
        await send_json(ws, {"type": "user_message", "id": "1", "payload": {"text": "go"}})
        await asyncio.wait_for(flood_done.wait(), 30)
        frames = await frames_until_close(ws, CloseCode.SLOW_CONSUMER)
    assert len(frames) < FLOOD_EVENTS
    assert all(f["type"] != "agent_completed" for f in frames)
