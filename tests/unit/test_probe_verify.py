"""Judging frames against the contract, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.probe import verify
from chatgate.probe.outcome import Problem

FIVE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def run(types: list[str], first_id: int = 1, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"type": t, "event_id": first_id + i, "thread_id": "th", "run_id": "run", **extra}
        for i, t in enumerate(types)
    ]


def cause(call: Any, *args: Any) -> str:
    with pytest.raises(Problem) as caught:
        call(*args)
    return caught.value.failure.cause


def test_the_five_events_in_order_pass() -> None:
    verify.five_events(run(FIVE))
    verify.five_events(run([*FIVE[:2], "agent_thinking", *FIVE[2:]]))


def test_missing_and_misordered_events_are_named() -> None:
    assert cause(verify.five_events, run(FIVE[:-1])) == "missing_events"
    swapped = [FIVE[0], FIVE[1], FIVE[3], FIVE[2], FIVE[4]]
    assert cause(verify.five_events, run(swapped)) == "events_out_of_order"
    assert cause(verify.five_events, run([FIVE[1], FIVE[0], *FIVE[2:]])) == "events_out_of_order"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("agent_failed", "agent_failed"),
        ("run_interrupted", "run_interrupted"),
        ("x", "agent_error"),
    ],
)
def test_an_agent_error_is_named_by_its_code(code: str, expected: str) -> None:
    events = run(["agent_started", "agent_thinking"])
    events.append({"type": "agent_error", "payload": {"code": code, "correlation_id": "c1"}})
    assert cause(verify.five_events, events) == expected


def test_ids_rise_by_one_and_belong_to_the_run() -> None:
    verify.numbered(run(FIVE, 6), "th", "run")
    assert cause(verify.numbered, run(FIVE), "th", "other") == "missing_ids"
    gap = run(FIVE)
    gap[2]["event_id"] = 9
    assert cause(verify.numbered, gap, "th", "run") == "events_out_of_order"
    unnumbered = run(FIVE)
    unnumbered[0]["event_id"] = None
    assert cause(verify.numbered, unnumbered, "th", "run") == "missing_ids"


def test_a_resume_gives_every_missed_event_once_through_the_end() -> None:
    verify.resumed(run(FIVE[1:], 2), 1)
    assert cause(verify.resumed, run(FIVE[2:], 3), 1) == "resume_incomplete"
    twice = run(FIVE[1:], 2)
    twice.append(dict(twice[-1]))
    assert cause(verify.resumed, twice, 1) == "resume_incomplete"
    assert cause(verify.resumed, run(FIVE[1:3], 2), 1) == "resume_incomplete"


def diagnostics(tier: str, enabled: bool, **via: bool) -> dict[str, Any]:
    return {"tier": tier, "e2e": {"enabled": enabled, "detection_method": via}}


def test_the_e2e_policy_of_each_tier() -> None:
    assert verify.e2e_policy(diagnostics("development", True)) == ("development", True)
    assert verify.e2e_policy(diagnostics("production", False)) == ("production", False)
    staging = diagnostics("staging", True, via_staging_auto_detection=True)
    assert verify.e2e_policy(staging) == ("staging", True)
    assert verify.e2e_policy(diagnostics("staging", False)) == ("staging", False)


def test_e2e_policy_violations_are_named() -> None:
    assert cause(verify.e2e_policy, diagnostics("production", True)) == "e2e_in_production"
    assert cause(verify.e2e_policy, diagnostics("staging", True)) == "e2e_policy_inconsistent"
    assert cause(verify.e2e_policy, diagnostics("test", False)) == "e2e_policy_inconsistent"
    assert cause(verify.e2e_policy, {"tier": "staging"}) == "diagnostics_unavailable"


def delta(event_id: int, offset: int, text: str) -> dict[str, Any]:
    payload = {"message_id": "msg", "offset": offset, "text": text}
    return {"type": "agent_text_delta", "event_id": event_id, "payload": payload}


def test_a_resume_may_skip_ids_only_before_a_merged_delta() -> None:
    merged = [*run(FIVE[2:4], 3), delta(9, 0, "6*7 = 42"), *run(FIVE[4:], 10)]
    verify.resumed(merged, 2)
    skipped_tool = [*run(FIVE[2:3], 3), *run(FIVE[3:], 6)]
    assert cause(verify.resumed, skipped_tool, 2) == "resume_incomplete"
    backwards = [*run(FIVE[2:4], 3), delta(4, 0, "x"), *run(FIVE[4:], 5)]
    assert cause(verify.resumed, backwards, 2) == "resume_incomplete"


def test_streamed_text_must_assemble_into_the_answer() -> None:
    end = {"type": "agent_completed", "event_id": 9, "payload": {"text": "6*7 = 42"}}
    verify.streamed_text([delta(5, 0, "6*7 "), delta(7, 6, "42"), delta(6, 4, "= "), end])
    verify.streamed_text([delta(5, 0, "6*7 = "), delta(6, 4, "= 42"), end])
    wrong = [delta(5, 0, "6*7 "), delta(6, 4, "= 41"), end]
    assert cause(verify.streamed_text, wrong) == "text_mismatch"
    holed = [delta(5, 0, "6*7 "), delta(6, 6, "42"), end]
    assert cause(verify.streamed_text, holed) == "text_mismatch"
    verify.streamed_text(run(FIVE))
