"""The JavaScript client's close-code table is the server's, code for code."""

from __future__ import annotations

import re
from pathlib import Path

from chatgate.closecodes import CLOSE_CODES

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "chatgate.js"
ROW = re.compile(r'(\d{4}): row\(\s*"(\w+)",.*?"(never|backoff|now)"\)', re.DOTALL)


def test_every_code_has_the_same_slug_and_retry_rule() -> None:
    rows = {int(code): (slug, retry) for code, slug, retry in ROW.findall(CLIENT.read_text())}
    expected = {int(code): (info.slug, info.retry.value) for code, info in CLOSE_CODES.items()}
    assert rows == expected
