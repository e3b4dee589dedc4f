"""Naming a model server's failure without its key (chatgate.agents.openai_failures)."""

from __future__ import annotations

import pytest

from chatgate.agents.openai_failures import redact, server_address

KEY = "sk-test-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e"


def test_redact_removes_the_key_and_anything_shaped_like_one() -> None:
    message = f"bad key {KEY}, also sk-other-123 and abcd****wxyz; Authorization: Bearer xyz"
    cleaned = redact(message, KEY)
    for secret in (KEY, "sk-other-123", "abcd****wxyz", "xyz"):
        assert secret not in cleaned
    assert cleaned.startswith("bad key [redacted]")


def test_redact_keeps_a_readable_length() -> None:
    assert len(redact("x" * 5000, None)) == 200


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        (None, "api.openai.com"),
        ("http://localhost:11434/v1", "http://localhost:11434"),
        ("https://user:pa55@llm.example.com/v1?key=secret", "https://llm.example.com"),
    ],
)
def test_server_address_hides_credentials(base_url: str | None, shown: str) -> None:
    assert server_address(base_url) == shown
