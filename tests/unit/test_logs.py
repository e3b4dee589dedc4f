from __future__ import annotations

import pytest

from chatgate.auth.minting import mint_token
from chatgate.logs import REDACTED, redact

TOKEN = mint_token("k" * 32, "alice")


@pytest.mark.parametrize(
    "line",
    [
        f"< authorization: Bearer {TOKEN}",
        f"< Authorization: bearer {TOKEN}",
        f"< sec-websocket-protocol: chatgate.v1, bearer.{TOKEN}",
        f'{{"token": "{TOKEN}"}}',
        f"token={TOKEN}&x=1",
        "Authorization: Bearer opaque-admin-token-1234",
    ],
)
def test_credentials_are_redacted(line: str) -> None:
    redacted = redact(line)
    assert REDACTED in redacted
    assert TOKEN not in redacted
    assert TOKEN.rsplit(".", 1)[1] not in redacted
    assert "opaque-admin-token-1234" not in redacted


@pytest.mark.parametrize(
    "line", ["connection open", "user alice sent 3 frames", "event_id=7 thread=th_1"]
)
def test_ordinary_lines_are_untouched(line: str) -> None:
    assert redact(line) == line
