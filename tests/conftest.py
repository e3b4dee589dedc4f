"""Test isolation: no test sees the developer's or CI's chatgate environment."""

from __future__ import annotations

import os

import pytest

from processes import OWNED_NAMES, OWNED_PREFIXES


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name in OWNED_NAMES or name.startswith(OWNED_PREFIXES):
            monkeypatch.delenv(name)
