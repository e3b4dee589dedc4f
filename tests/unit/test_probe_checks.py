"""The table of checks and ``--only``."""

from __future__ import annotations

import pytest

from chatgate.probe.checks import CHECKS, UnknownCheck, select
from chatgate.probe.checks.base import Need


def test_22_checks_in_order() -> None:
    assert [c.id for c in CHECKS] == [f"P1-{n:02d}" for n in range(1, 23)]
    assert [c.name for c in CHECKS][:3] == ["health", "handshake", "auth_header"]
    assert CHECKS[-1].name == "latency"


def test_multi_user_checks_need_minting() -> None:
    needs = {c.name: c.needs for c in CHECKS}
    assert needs["isolation"] is needs["concurrency"] is needs["auth_expired"] is Need.MINTING
    assert needs["health"] is needs["auth_invalid"] is Need.NOTHING


def test_only_takes_ids_and_names_in_any_case_and_keeps_table_order() -> None:
    assert [c.id for c in select("latency, p1-01,Health")] == ["P1-01", "P1-22"]
    assert len(select(None)) == len(select("")) == 22


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(UnknownCheck, match="P1-99"):
        select("health,P1-99")
