"""Judging what a server sent against the wire contract. Pure: frames in, a Problem out.

Each function returns quietly when the frames are right and raises
:class:`~chatgate.probe.outcome.Problem` naming the cause when they are not.
"""

from __future__ import annotations

from typing import Any

from chatgate.client.events import AGENT_EVENT_TYPES, RUN_END_TYPES, TEXT_DELTA, TextAssembly
from chatgate.probe.outcome import Problem, fail

_KNOWN_AGENT_ERRORS = frozenset({"agent_failed", "run_interrupted"})
_DEVELOPMENT_TIERS = frozenset({"development", "test"})

Frame = dict[str, Any]


def _types(events: list[Frame]) -> list[str]:
    return [str(event.get("type")) for event in events]


def agent_error(events: list[Frame]) -> Problem | None:
    """The problem when the run ended with ``agent_error``, naming its code."""
    if not events or events[-1].get("type") != "agent_error":
        return None
    payload = events[-1].get("payload") or {}
    code = str(payload.get("code"))
    cause = code if code in _KNOWN_AGENT_ERRORS else "agent_error"
    return fail(
        cause,
        f"the run ended with agent_error {code} ({payload.get('message')!r}, "
        f"correlation_id {payload.get('correlation_id')})",
    )


def five_events(events: list[Frame]) -> None:
    """The run's events hold the five agent events in order (thinking and tools may repeat).

    Raises:
        Problem: ``agent_failed``/``run_interrupted``/``agent_error``, ``missing_events``
            or ``events_out_of_order``.
    """
    problem = agent_error(events)
    if problem is not None:
        raise problem
    types = _types(events)
    missing = [kind for kind in AGENT_EVENT_TYPES if kind not in types]
    if missing:
        raise fail("missing_events", f"the run sent {types}; missing {missing}")
    in_order = (
        types[0] == "agent_started"
        and types[-1] == "agent_completed"
        and types.count("agent_started") == 1
        and types.count("agent_completed") == 1
        and types.index("tool_executing") < types.index("tool_completed")
    )
    if not in_order:
        raise fail("events_out_of_order", f"the run sent {types}")


def numbered(events: list[Frame], thread_id: str, run_id: str) -> None:
    """Every event carries the thread and run ids, and ``event_id`` rises by one.

    Raises:
        Problem: ``missing_ids`` or ``events_out_of_order``.
    """
    for event in events:
        if event.get("thread_id") != thread_id or event.get("run_id") != run_id:
            raise fail(
                "missing_ids",
                f"{event.get('type')} carries thread_id {event.get('thread_id')!r} and run_id "
                f"{event.get('run_id')!r}; the ack said {thread_id!r} and {run_id!r}",
            )
    raw_ids = [event.get("event_id") for event in events]
    ids = [i for i in raw_ids if isinstance(i, int)]
    if len(ids) != len(raw_ids):
        raise fail("missing_ids", f"event ids {raw_ids}: every event needs an integer event_id")
    first = ids[0] if ids else 0
    if ids != list(range(first, first + len(ids))):
        raise fail("events_out_of_order", f"event ids {ids} do not rise by one")


def resumed(events: list[Frame], after_event_id: int) -> None:
    """Events after ``after_event_id`` each came once, in order, through the run's end.

    An id may be skipped only right before an ``agent_text_delta``: a resume
    merges consecutive deltas into one frame carrying the last merged id.

    Raises:
        Problem: ``resume_incomplete``.
    """
    ids = [event.get("event_id") for event in events]
    ended = bool(events) and events[-1].get("type") in RUN_END_TYPES
    if not _rising_but_for_merged_deltas(events, after_event_id):
        raise fail(
            "resume_incomplete",
            f"after event {after_event_id} the resume and live delivery gave ids {ids}",
        )
    if not ended:
        raise fail(
            "resume_incomplete",
            f"after event {after_event_id} the events {_types(events)} did not reach the run's end",
        )


def _rising_but_for_merged_deltas(events: list[Frame], after_event_id: int) -> bool:
    """Whether ids rise by one in arrival order, skipping only up to a (merged) delta.

    Arrival order counts: the contract sends a thread's events in ``event_id``
    order, whether they come live or through the resume.
    """
    previous = after_event_id
    for event in events:
        event_id = event.get("event_id")
        if not isinstance(event_id, int) or isinstance(event_id, bool) or event_id <= previous:
            return False
        if event_id != previous + 1 and event.get("type") != TEXT_DELTA:
            return False
        previous = event_id
    return True


def id_span(events: list[Frame]) -> str:
    """The ids of ``events`` for a summary: ``first..last``, and the frame count when ids skip."""
    ids = [event.get("event_id") for event in events]
    if not ids:
        return "no events"
    span = f"{ids[0]}..{ids[-1]}"
    first, last = ids[0], ids[-1]
    if isinstance(first, int) and isinstance(last, int) and last - first + 1 != len(ids):
        return f"{span} in {len(ids)} frames (text deltas merged)"
    return span


def streamed_text(events: list[Frame]) -> None:
    """When the run streamed deltas, they assemble into ``agent_completed.text``.

    Raises:
        Problem: ``text_mismatch``.
    """
    answer = TextAssembly()
    streamed = False
    for event in events:
        payload = event.get("payload") or {}
        if event.get("type") == TEXT_DELTA:
            offset, text = payload.get("offset"), payload.get("text")
            if not isinstance(offset, int) or not isinstance(text, str):
                raise fail("text_mismatch", f"a delta without offset or text: {payload!r:.120}")
            answer.place(offset, text)
            streamed = True
    if not streamed or not events or events[-1].get("type") != "agent_completed":
        return
    final = (events[-1].get("payload") or {}).get("text")
    if final != answer.text:
        raise fail(
            "text_mismatch",
            f"deltas make {answer.text[:60]!r}, agent_completed.text is {str(final)[:60]!r}",
        )


def e2e_policy(diagnostics: dict[str, Any]) -> tuple[str, bool]:
    """The tier and E2E state of ``/diagnostics``, checked against the rules of docs/protocol.md §3.

    Raises:
        Problem: ``diagnostics_unavailable`` (fields missing), ``e2e_in_production``
            or ``e2e_policy_inconsistent``.
    """
    tier = diagnostics.get("tier")
    e2e = diagnostics.get("e2e")
    enabled = e2e.get("enabled") if isinstance(e2e, dict) else None
    if not isinstance(tier, str) or not isinstance(enabled, bool) or not isinstance(e2e, dict):
        raise fail("diagnostics_unavailable", "/diagnostics lacks tier or e2e.enabled")
    if tier == "production" and enabled:
        raise fail("e2e_in_production", "/diagnostics reports E2E mode on in the production tier")
    method = e2e.get("detection_method")
    via = method if isinstance(method, dict) else {}
    expected = tier in _DEVELOPMENT_TIERS or bool(
        via.get("via_env_vars") or via.get("via_staging_auto_detection")
    )
    if tier != "production" and enabled != expected:
        raise fail(
            "e2e_policy_inconsistent",
            f"tier {tier}, e2e.enabled {enabled}, detection_method {via}",
        )
    return tier, enabled
