"""Output never breaks a console: ASCII on request or when the encoding needs it."""

from __future__ import annotations

import io

from chatgate.probe.console import ASCII, UNICODE, Console, can_encode
from chatgate.probe.outcome import Status


def stream(encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding)


def test_a_utf8_console_gets_the_symbols() -> None:
    console = Console(stream("utf-8"))
    assert not console.ascii_only
    assert console.mark(Status.PASS) == UNICODE.passed


def test_a_legacy_code_page_falls_back_to_ascii() -> None:
    for encoding in ("cp1252", "cp437", "ascii"):
        console = Console(stream(encoding))
        assert console.ascii_only, encoding
        assert console.symbols is ASCII


def test_ascii_can_be_asked_for() -> None:
    assert Console(stream("utf-8"), ascii_only=True).ascii_only


def test_characters_a_console_cannot_encode_are_escaped_not_fatal() -> None:
    target = stream("cp1252")
    console = Console(target)
    console.line("reason: caf\u00e9 \u2713 \U0001f600")
    target.flush()
    written = target.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]
    assert written == "reason: caf\\xe9 \\u2713 \\U0001f600\n"


def test_every_ascii_mark_is_ascii() -> None:
    marks = (ASCII.passed, ASCII.failed, ASCII.skipped, ASCII.arrow, ASCII.dash)
    assert all(mark.isascii() for mark in marks)


def test_a_text_only_stream_encodes_anything() -> None:
    assert can_encode(io.StringIO(), "\u2713")
