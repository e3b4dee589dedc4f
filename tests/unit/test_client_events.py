"""The thread cursor releases each event once, in event_id order, whatever order it arrives in."""

from __future__ import annotations

import pytest

from chatgate.client.events import AGENT_EVENT_TYPES, Event, TextAssembly, ThreadCursor


def event(event_id: int, kind: str = "agent_thinking") -> Event:
    return Event(kind, event_id, "th_1", "run_1", None, {})


def ids(events: list[Event]) -> list[int | None]:
    return [e.event_id for e in events]


def test_in_order_events_are_released_at_once() -> None:
    cursor = ThreadCursor(0)
    assert ids(cursor.accept(event(1))) == [1]
    assert ids(cursor.accept(event(2))) == [2]
    assert cursor.last == 2


def test_duplicates_are_dropped() -> None:
    cursor = ThreadCursor(0)
    cursor.accept(event(1))
    assert cursor.accept(event(1)) == []
    assert cursor.accept(event(0)) == []


def test_live_events_wait_for_the_resume_that_fills_the_gap() -> None:
    cursor = ThreadCursor(3)
    assert cursor.accept(event(6)) == []
    assert cursor.accept(event(6)) == []
    assert cursor.waiting == 1
    assert ids(cursor.accept(event(4))) == [4]
    assert ids(cursor.accept(event(5))) == [5, 6]
    assert cursor.waiting == 0
    assert cursor.last == 6


def test_an_unknown_thread_starts_at_its_first_event() -> None:
    cursor = ThreadCursor()
    assert ids(cursor.accept(event(7))) == [7]
    assert ids(cursor.accept(event(8))) == [8]


def test_a_gap_the_server_cannot_fill_is_flushed_in_order() -> None:
    cursor = ThreadCursor(1)
    cursor.accept(event(5))
    cursor.accept(event(4))
    assert ids(cursor.flush()) == [4, 5]
    assert cursor.last == 5
    assert cursor.flush() == []


def test_only_numbered_events_go_through_a_cursor() -> None:
    with pytest.raises(ValueError, match="numbered"):
        ThreadCursor().accept(Event("pong", None, None, None, None, {}))


def test_frames_become_events() -> None:
    frame = {
        "type": "agent_completed",
        "event_id": 5,
        "thread_id": "th_1",
        "run_id": "run_1",
        "ts": "2026-01-01T00:00:00.000Z",
        "payload": {"text": "42"},
    }
    parsed = Event.from_frame(frame)
    assert parsed.ends_run
    assert parsed.in_thread
    assert parsed.payload == {"text": "42"}
    odd = Event.from_frame({"type": "pong", "event_id": True, "payload": [1]})
    assert (odd.event_id, odd.payload, odd.in_thread, odd.ends_run) == (None, {}, False, False)


def test_the_five_agent_events_in_contract_order() -> None:
    assert AGENT_EVENT_TYPES == (
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    )


def test_text_assembly_places_pieces_by_code_point_offset() -> None:
    answer = TextAssembly()
    answer.place(0, "héllo ")
    answer.place(9, "✓!")  # arrives before the piece that fills the hole
    assert answer.text == "héllo "
    answer.place(6, "wör")
    assert answer.text == "héllo wör✓!"
    answer.place(0, "héllo ")  # a repeated delta changes nothing
    answer.place(3, "lo wö")  # an overlapping merged one neither
    assert answer.text == "héllo wör✓!"
    assert answer.length == len("héllo wör✓!")
