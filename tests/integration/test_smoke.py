from __future__ import annotations

from support import chat, established, running_server


async def test_demo_agent_round_trip() -> None:
    async with running_server() as server, server.connect(server.token("alice")) as ws:
        hello = await established(ws)
        assert hello["payload"]["user_id"] == "alice"
        frames = await chat(ws, "what is 6*7?")
        types = [f["type"] for f in frames]
        assert types == [
            "message_ack",
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        ]
        assert frames[4]["payload"]["result"] == 42
        assert "42" in frames[5]["payload"]["text"]
        assert [f["event_id"] for f in frames[1:]] == [1, 2, 3, 4, 5]
