"""Writing reports to a console that may not encode every character.

A Windows console with a legacy code page (cp1252, cp437) cannot encode
check marks or arrows; printing one raises ``UnicodeEncodeError`` and the
report is lost. The probe asks the stream first and falls back to ASCII, and
escapes any character the stream still cannot encode (a server's reason
text, for instance) instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from chatgate.probe.outcome import Status


@dataclass(frozen=True, slots=True)
class Symbols:
    """The marks a report uses."""

    passed: str
    failed: str
    skipped: str
    arrow: str
    dash: str


UNICODE = Symbols(passed="✓", failed="✗", skipped="○", arrow="→", dash="—")
ASCII = Symbols(passed="+", failed="x", skipped="-", arrow="->", dash="-")


def can_encode(stream: TextIO, text: str) -> bool:
    """Whether ``stream``'s encoding can encode ``text`` (a stream of str alone, any text)."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None:
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class Console:
    """Writes lines that never break ``stream``: ASCII when asked or when it must."""

    def __init__(self, stream: TextIO, *, ascii_only: bool = False) -> None:
        self.stream = stream
        sample = f"{UNICODE.passed}{UNICODE.failed}{UNICODE.skipped}{UNICODE.arrow}{UNICODE.dash}"
        self.ascii_only = ascii_only or not can_encode(stream, sample)
        self.symbols = ASCII if self.ascii_only else UNICODE
        self._encoding = "ascii" if self.ascii_only else (stream.encoding or "utf-8")

    def mark(self, status: Status) -> str:
        """The mark of a verdict."""
        return {
            Status.PASS: self.symbols.passed,
            Status.FAIL: self.symbols.failed,
            Status.SKIP: self.symbols.skipped,
        }[status]

    def safe(self, text: str) -> str:
        """``text`` with every character the console cannot encode escaped."""
        return text.encode(self._encoding, errors="backslashreplace").decode(self._encoding)

    def line(self, text: str = "") -> None:
        """Write one line."""
        self.stream.write(self.safe(text) + "\n")
        self.stream.flush()
