from __future__ import annotations

from support import DEMO_RUN, answer_text, chat, established, running_server


async def test_demo_agent_round_trip() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        hello = await established(ws)
        assert hello["payload"]["user_id"] == "alice"
        frames = await chat(ws, "what is 6*7?")
        types = [f["type"] for f in frames]
        assert types == ["message_ack", *DEMO_RUN]
        assert frames[4]["payload"]["result"] == 42
        assert frames[-1]["payload"]["text"] == "6*7 = 42"
        assert answer_text(frames) == "6*7 = 42"
        assert [f["event_id"] for f in frames[1:]] == list(range(1, len(DEMO_RUN) + 1))
