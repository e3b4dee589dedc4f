"""Test isolation: no test sees the developer's or CI's chatgate environment."""

from __future__ import annotations

import os

import pytest

_OWNED_PREFIXES = ("CHATGATE_", "E2E_")
_OWNED_NAMES = {
    "ENVIRONMENT",
    "GOOGLE_CLOUD_PROJECT",
    "K_SERVICE",
    "DISABLE_ENHANCED_E2E_DETECTION",
    "PORT",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name in _OWNED_NAMES or name.startswith(_OWNED_PREFIXES):
            monkeypatch.delenv(name)
