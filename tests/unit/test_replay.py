"""Replaying a log: consecutive deltas of one answer merged, everything else as stored."""

from __future__ import annotations

import orjson

from chatgate.chat.replay import DeltaMerger
from chatgate.models import StoredEvent
from chatgate.store.batch import MERGED_DELTA_CHARS


def event(event_id: int, kind: str, payload: dict, run_id: str = "run_1") -> StoredEvent:
    return StoredEvent("th_1", event_id, kind, run_id, payload, "2026-01-01T00:00:00.000Z")


def deltas(first_id: int, texts: list[str], offset: int = 0, message_id: str = "msg_a"):
    out = []
    for i, text in enumerate(texts):
        out.append(
            event(
                first_id + i,
                "agent_text_delta",
                {"message_id": message_id, "offset": offset, "text": text},
            )
        )
        offset += len(text)
    return out


def replay(events: list[StoredEvent]) -> list[dict]:
    merger = DeltaMerger()
    frames = [frame for e in events for frame in merger.add(e)] + merger.flush()
    return [orjson.loads(frame) for frame in frames]


def test_consecutive_deltas_become_one_frame_with_the_last_id() -> None:
    log = [
        event(1, "agent_started", {"agent": "demo"}),
        *deltas(2, ["6*7 ", "= ", "42"]),
        event(5, "agent_completed", {"text": "6*7 = 42", "status": "completed"}),
    ]
    frames = replay(log)
    assert [(f["type"], f["event_id"]) for f in frames] == [
        ("agent_started", 1),
        ("agent_text_delta", 4),
        ("agent_completed", 5),
    ]
    assert frames[1]["payload"] == {"message_id": "msg_a", "offset": 0, "text": "6*7 = 42"}
    assert frames[1]["run_id"] == "run_1"
    assert frames[1]["thread_id"] == "th_1"


def test_a_lone_delta_is_sent_as_stored() -> None:
    [only] = deltas(7, ["héllo ✓"], offset=3)
    assert replay([only]) == [orjson.loads(orjson.dumps(replay([only])[0]))]
    assert replay([only])[0]["event_id"] == 7
    assert replay([only])[0]["payload"]["offset"] == 3


def test_ten_thousand_deltas_replay_in_a_handful_of_frames_byte_identical() -> None:
    texts = [f"tok{i} " for i in range(10_000)]
    frames = replay(deltas(1, texts))
    assert len(frames) <= 10
    assert all(len(f["payload"]["text"]) <= MERGED_DELTA_CHARS + 10 for f in frames)
    assert "".join(f["payload"]["text"] for f in frames) == "".join(texts)
    offsets = [f["payload"]["offset"] for f in frames]
    assert offsets == [
        sum(len(f["payload"]["text"]) for f in frames[:i]) for i in range(len(frames))
    ]
    assert frames[-1]["event_id"] == 10_000


def test_deltas_of_different_answers_or_with_a_gap_are_not_merged() -> None:
    first = deltas(1, ["a", "b"], message_id="msg_a")
    other = deltas(3, ["c"], message_id="msg_b")
    gap = deltas(5, ["e"], offset=3, message_id="msg_b")  # offset 1 would follow "c"
    frames = replay([*first, *other, *gap])
    assert [(f["event_id"], f["payload"]["text"]) for f in frames] == [
        (2, "ab"),
        (3, "c"),
        (5, "e"),
    ]


def test_a_malformed_stored_delta_passes_through_unmerged() -> None:
    odd = event(3, "agent_text_delta", {"text": "x"})
    frames = replay([*deltas(1, ["a", "b"]), odd, *deltas(4, ["c"], offset=2)])
    assert [(f["event_id"], f["payload"].get("text")) for f in frames] == [
        (2, "ab"),
        (3, "x"),
        (4, "c"),
    ]
