"""Typed client errors carry the code, the slug of the table, and the reason."""

from __future__ import annotations

from chatgate.client.errors import (
    ConnectionLost,
    Interrupted,
    MessageNotConfirmed,
    ReconnectFailed,
    ServerClosed,
)
from chatgate.closecodes import CLOSE_CODES, CloseCode, Retry


def test_a_close_of_the_table_carries_code_slug_detail_and_retry() -> None:
    closed = ServerClosed(4003, "auth_invalid: bad signature")
    assert (closed.code, closed.slug, closed.detail) == (4003, "auth_invalid", "bad signature")
    assert closed.reason == "auth_invalid: bad signature"
    assert closed.info is CLOSE_CODES[CloseCode.AUTH_INVALID]
    assert closed.retry is Retry.NEVER
    assert str(closed) == "closed 4003 auth_invalid: bad signature"


def test_the_table_names_the_slug_even_when_a_proxy_rewrote_the_reason() -> None:
    closed = ServerClosed(1013, "")
    assert closed.slug == "try_again_later"
    assert closed.retry is Retry.BACKOFF


def test_a_code_outside_the_table_keeps_the_reason_and_is_not_retried() -> None:
    closed = ServerClosed(4999, "custom: something")
    assert (closed.slug, closed.detail, closed.info) == ("custom", "something", None)
    assert closed.retry is Retry.NEVER


def test_reconnect_failed_exposes_the_last_close_code() -> None:
    assert ReconnectFailed(3, ServerClosed(1013, "try_again_later: x")).code == 1013
    assert ReconnectFailed(1, ConnectionLost()).code == 1006
    assert ReconnectFailed(0, Interrupted(ConnectionLost())).code is None


def test_an_unconfirmed_message_is_an_interruption_with_its_cause() -> None:
    cause = ServerClosed(1011, "internal_error: cid=abc")
    error = MessageNotConfirmed(cause)
    assert isinstance(error, Interrupted)
    assert error.cause is cause
