"""Any client input parses to a message or a ProtocolViolation, never anything else.

Hypothesis feeds the frame parser arbitrary text and JSON of every shape, and
the upgrade-header reader arbitrary header lists: a crash here would be a 1011
in production.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.protocol import (
    MAX_INTEGER,
    Auth,
    Cancel,
    Ping,
    ProtocolViolation,
    Resume,
    TokenRefresh,
    UserMessage,
    error_frame,
    parse_client_frame,
)
from chatgate.transport.upgrade import UpgradeHeaders, read_upgrade_headers

_MESSAGES = (Auth, UserMessage, Resume, Cancel, TokenRefresh, Ping)
_TYPES = ["user_message", "ping", "resume", "cancel", "token_refresh", "auth", "other", ""]

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=200)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = st.fixed_dictionaries(
    {"type": st.sampled_from(_TYPES) | _JSON},
    optional={
        "id": _JSON,
        "thread_id": _JSON,
        "run_id": _JSON,
        "token": _JSON,
        "after_event_id": _JSON,
        "payload": st.fixed_dictionaries({}, optional={"text": _JSON}) | _JSON,
    },
)


def _parse_or_refuse(text: str) -> None:
    try:
        parsed = parse_client_frame(text)
    except ProtocolViolation as violation:
        # The error frame the socket answers with must always encode.
        error_frame(violation.code, violation.message, "cid", violation.client_id)
        return
    assert isinstance(parsed, _MESSAGES)
    client_id = getattr(parsed, "id", None)
    assert client_id is None or isinstance(client_id, str) or abs(client_id) <= MAX_INTEGER
    if isinstance(parsed, Resume):
        assert 0 <= parsed.after_event_id <= MAX_INTEGER


@given(st.text(max_size=400))
@settings(max_examples=1000)
def test_any_text_is_a_message_or_a_violation(text: str) -> None:
    _parse_or_refuse(text)


@given(_FIELDS)
@settings(max_examples=2000)
def test_any_frame_shape_is_a_message_or_a_violation(fields: dict[str, Any]) -> None:
    # The standard library writes integers past 64 bits, as a client may.
    _parse_or_refuse(json.dumps(fields))


@given(_JSON)
def test_any_json_value_is_a_message_or_a_violation(value: Any) -> None:
    _parse_or_refuse(json.dumps(value))


_HEADER_NAMES = st.sampled_from(
    [b"authorization", b"Authorization", b"origin", b"host", b"HOST", b"x-e2e-test", b"cookie"]
) | st.binary(max_size=20)


@given(st.lists(st.tuples(_HEADER_NAMES, st.binary(max_size=300)), max_size=20))
@settings(max_examples=1000)
def test_any_header_list_is_read_without_an_exception(raw: list[tuple[bytes, bytes]]) -> None:
    found = read_upgrade_headers(raw)
    assert isinstance(found, UpgradeHeaders)
    hosts = [value for name, value in raw if name.lower() == b"host"]
    assert found.host == (hosts[0].decode("latin-1") if hosts else None)
