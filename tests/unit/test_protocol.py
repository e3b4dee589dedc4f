"""Parsing client frames and encoding server frames (docs/protocol.md section 4)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from chatgate.protocol import (
    MAX_ID_CHARS,
    MAX_INTEGER,
    Auth,
    Cancel,
    ClientMessage,
    ErrorCode,
    Ping,
    ProtocolViolation,
    Resume,
    TokenRefresh,
    UserMessage,
    encode,
    error_frame,
    parse_client_frame,
    timestamp,
)

TS_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ENVELOPE_KEYS = {"type", "event_id", "thread_id", "run_id", "ts", "payload"}


def frame(**fields: Any) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (frame(type="auth", token="a.b.c"), Auth("a.b.c")),
        (
            frame(type="user_message", id="m1", payload={"text": "hi"}),
            UserMessage("m1", None, "hi"),
        ),
        (
            frame(type="user_message", id=7, thread_id="th_1", payload={"text": "what is 6*7?"}),
            UserMessage(7, "th_1", "what is 6*7?"),
        ),
        (
            frame(type="user_message", payload={"text": "no id"}),
            UserMessage(None, None, "no id"),
        ),
        (
            frame(type="resume", id="r", thread_id="th_1", after_event_id=5),
            Resume("r", "th_1", 5),
        ),
        (frame(type="resume", thread_id="th_1"), Resume(None, "th_1", 0)),
        (frame(type="resume", thread_id="th_1", after_event_id=0), Resume(None, "th_1", 0)),
        (frame(type="cancel", id="c", run_id="run_1"), Cancel("c", "run_1")),
        (frame(type="token_refresh", id=3, token="x.y.z"), TokenRefresh(3, "x.y.z")),
        (frame(type="ping"), Ping(None)),
        (frame(type="ping", id="p1"), Ping("p1")),
    ],
    ids=[
        "auth",
        "user_message",
        "user_message-thread",
        "user_message-no-id",
        "resume",
        "resume-default-after",
        "resume-zero",
        "cancel",
        "token_refresh",
        "ping",
        "ping-id",
    ],
)
def test_parses_every_client_type(text: str, expected: ClientMessage) -> None:
    assert parse_client_frame(text) == expected


def test_long_token_is_not_cut_by_the_id_limit() -> None:
    token = "t" * 4000
    assert parse_client_frame(frame(type="auth", token=token)) == Auth(token)
    assert parse_client_frame(frame(type="token_refresh", token=token)) == TokenRefresh(None, token)


def violation(text: str) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as caught:
        parse_client_frame(text)
    return caught.value


@pytest.mark.parametrize(
    "text",
    ["", "{", "not json", "{'type': 'ping'}", '{"type": "ping",}', "NaN", "\ud800"],
    ids=["empty", "open-brace", "words", "single-quotes", "trailing-comma", "nan", "surrogate"],
)
def test_invalid_json(text: str) -> None:
    exc = violation(text)
    assert exc.code is ErrorCode.INVALID_JSON
    assert exc.client_id is None


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '[{"type": "ping"}]',
        '"ping"',
        "42",
        "null",
        "true",
        frame(id="x"),
        frame(type=5),
        frame(type=None),
        frame(type=["ping"]),
        frame(type="ping", id=True),
        frame(type="ping", id=False),
        frame(type="ping", id=1.5),
        frame(type="ping", id=["a"]),
        frame(type="ping", id={"a": 1}),
        frame(type="ping", id="i" * (MAX_ID_CHARS + 1)),
        frame(type="user_message", id="m"),
        frame(type="user_message", id="m", payload="hi"),
        frame(type="user_message", id="m", payload={}),
        frame(type="user_message", id="m", payload={"text": ""}),
        frame(type="user_message", id="m", payload={"text": "   \n"}),
        frame(type="user_message", id="m", payload={"text": 5}),
        frame(type="user_message", id="m", thread_id="", payload={"text": "hi"}),
        frame(type="user_message", id="m", thread_id=5, payload={"text": "hi"}),
        frame(type="user_message", thread_id="t" * (MAX_ID_CHARS + 1), payload={"text": "hi"}),
        frame(type="resume", thread_id="th", after_event_id=-1),
        frame(type="resume", thread_id="th", after_event_id="3"),
        frame(type="resume", thread_id="th", after_event_id=1.5),
        frame(type="resume", thread_id="th", after_event_id=True),
        frame(type="resume", thread_id="th", after_event_id=None),
        frame(type="resume", after_event_id=1),
        frame(type="resume", thread_id=7, after_event_id=1),
        frame(type="cancel"),
        frame(type="cancel", run_id=""),
        frame(type="cancel", run_id=9),
        frame(type="token_refresh"),
        frame(type="token_refresh", token=""),
        frame(type="auth"),
        frame(type="auth", token=None),
    ],
)
def test_invalid_message(text: str) -> None:
    assert violation(text).code is ErrorCode.INVALID_MESSAGE


def test_overlong_and_bool_ids_are_refused() -> None:
    assert violation(frame(type="ping", id="i" * MAX_ID_CHARS + "x")).code is (
        ErrorCode.INVALID_MESSAGE
    )
    assert parse_client_frame(frame(type="ping", id="i" * MAX_ID_CHARS)) == Ping("i" * MAX_ID_CHARS)
    assert violation(frame(type="ping", id=True)).client_id is None


# Integers land in signed 64-bit columns, and an id is echoed back in error frames.
@pytest.mark.parametrize(
    "text",
    [
        frame(type="resume", thread_id="th", after_event_id=2**63),
        frame(type="resume", thread_id="th", after_event_id=2**64 - 1),
        frame(type="resume", thread_id="th", after_event_id=2**64),
        frame(type="resume", thread_id="th", after_event_id=10**30),
        frame(type="ping", id=2**63),
        frame(type="ping", id=-(2**63)),
        frame(type="ping", id=2**64 - 1),
        frame(type="ping", id=10**30),
    ],
    ids=["2^63", "2^64-1", "2^64", "10^30", "id-2^63", "id--2^63", "id-2^64-1", "id-10^30"],
)
def test_integers_past_64_bits_are_invalid_messages(text: str) -> None:
    exc = violation(text)
    assert exc.code is ErrorCode.INVALID_MESSAGE
    assert exc.client_id is None or abs(exc.client_id) <= MAX_INTEGER  # type: ignore[arg-type]


def test_the_largest_integers_are_accepted() -> None:
    resume = frame(type="resume", id=MAX_INTEGER, thread_id="th", after_event_id=MAX_INTEGER)
    assert parse_client_frame(resume) == Resume(MAX_INTEGER, "th", MAX_INTEGER)
    assert parse_client_frame(frame(type="ping", id=-MAX_INTEGER)) == Ping(-MAX_INTEGER)


# PostgreSQL text columns cannot hold NUL: refused at the door, never failing in the store.
@pytest.mark.parametrize(
    "text",
    [
        frame(type="ping", id="a\u0000b"),
        frame(type="user_message", id="m", thread_id="th\u0000", payload={"text": "hi"}),
        frame(type="user_message", id="m", payload={"text": "hi\u0000there"}),
        frame(type="user_message", id="m", payload={"text": "\u0000"}),
        frame(type="resume", thread_id="\u0000", after_event_id=0),
        frame(type="cancel", run_id="run\u0000"),
        frame(type="token_refresh", token="a.b\u0000.c"),
    ],
)
def test_nul_is_refused_in_ids_and_text(text: str) -> None:
    assert "\\u0000" in text
    assert violation(text).code is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("client_id", ["m-42", 42])
def test_invalid_message_keeps_the_client_id(client_id: str | int) -> None:
    exc = violation(frame(type="user_message", id=client_id, payload={"text": ""}))
    assert exc.code is ErrorCode.INVALID_MESSAGE
    assert exc.client_id == client_id


@pytest.mark.parametrize("client_id", ["m-42", 42, None])
@pytest.mark.parametrize("kind", ["subscribe", "PING", "user-message", "", "x" * 200])
def test_unknown_type_keeps_the_client_id(kind: str, client_id: str | int | None) -> None:
    fields: dict[str, Any] = {"type": kind}
    if client_id is not None:
        fields["id"] = client_id
    exc = violation(json.dumps(fields))
    assert exc.code is ErrorCode.UNKNOWN_TYPE
    assert exc.client_id == client_id
    assert len(exc.message) < 100


def test_encode_envelope() -> None:
    text = encode("agent_thinking", {"text": "hm"}, thread_id="th_1", run_id="run_1", event_id=7)
    decoded = json.loads(text)
    assert set(decoded) == ENVELOPE_KEYS
    assert decoded["type"] == "agent_thinking"
    assert decoded["event_id"] == 7
    assert decoded["thread_id"] == "th_1"
    assert decoded["run_id"] == "run_1"
    assert decoded["payload"] == {"text": "hm"}
    assert TS_FORMAT.match(decoded["ts"])


def test_encode_without_thread_has_null_fields() -> None:
    decoded = json.loads(encode("pong", {}))
    assert set(decoded) == ENVELOPE_KEYS
    assert decoded["event_id"] is None
    assert decoded["thread_id"] is None
    assert decoded["run_id"] is None
    assert decoded["payload"] == {}
    assert TS_FORMAT.match(decoded["ts"])


def test_encode_keeps_a_given_ts() -> None:
    ts = "2026-01-01T00:00:00.000Z"
    assert json.loads(encode("pong", {}, ts=ts))["ts"] == ts


def test_timestamp_format() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 89_999, tzinfo=UTC)
    assert timestamp(moment) == "2026-03-04T05:06:07.089Z"
    assert timestamp(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    assert timestamp(datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == (
        "2026-12-31T23:59:59.999Z"
    )
    assert TS_FORMAT.match(timestamp())


def test_error_frame_with_client_id() -> None:
    decoded = json.loads(error_frame(ErrorCode.UNKNOWN_TYPE, "unknown", "cid-1", "m-1"))
    assert set(decoded) == ENVELOPE_KEYS
    assert decoded["type"] == "error"
    assert decoded["event_id"] is None
    assert decoded["thread_id"] is None
    assert decoded["payload"] == {
        "code": "unknown_type",
        "message": "unknown",
        "correlation_id": "cid-1",
        "id": "m-1",
    }


def test_error_frame_without_client_id_has_no_id() -> None:
    decoded = json.loads(error_frame(ErrorCode.INVALID_JSON, "bad", "cid-2", None))
    assert decoded["payload"] == {
        "code": "invalid_json",
        "message": "bad",
        "correlation_id": "cid-2",
    }


def test_error_frame_keeps_integer_ids() -> None:
    decoded = json.loads(error_frame(ErrorCode.RATE_LIMITED, "slow down", "c", 0))
    assert decoded["payload"]["id"] == 0


def test_error_codes_are_the_contract_codes() -> None:
    assert {code.value for code in ErrorCode} == {
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "thread_not_found",
        "rate_limited",
        "run_not_found",
    }
