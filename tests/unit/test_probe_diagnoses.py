"""The diagnoses table covers every close code, the upgrade statuses, and drop timings."""

from __future__ import annotations

import pytest

from chatgate.closecodes import CLOSE_CODES, CloseCode
from chatgate.probe.diagnoses import (
    CAUSES,
    KNOWN_LIMITS,
    close_diagnosis,
    diagnosis,
    drop_diagnosis,
    http_diagnosis,
)


@pytest.mark.parametrize("code", list(CloseCode))
def test_every_close_code_has_a_diagnosis_named_by_its_slug(code: CloseCode) -> None:
    found = close_diagnosis(int(code))
    assert found is not None
    assert found.cause == CLOSE_CODES[code].slug
    assert found.likely
    assert found.next_step


def test_a_code_outside_the_table_has_none() -> None:
    assert close_diagnosis(4999) is None


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (400, "http_400"),
        (403, "http_403"),
        (404, "wrong_path"),
        (426, "http_426"),
        (502, "http_502"),
        (503, "http_503"),
        (418, "http_418"),
    ],
)
def test_upgrade_statuses(status: int, cause: str) -> None:
    found = http_diagnosis(status)
    assert found.cause == cause
    assert found.likely
    assert found.next_step


@pytest.mark.parametrize(
    ("since_open", "idle", "cause"),
    [
        (30.2, 0.5, "lb_backend_timeout"),
        (29.0, 29.0, "lb_backend_timeout"),
        (61.0, 60.4, "proxy_idle_timeout"),
        (250.0, 100.3, "proxy_idle_timeout"),
        (300.5, 2.0, "cloud_run_request_timeout"),
        (3601.0, 1.0, "cloud_run_request_timeout"),
        (0.6, 0.2, "abnormal_closure"),
        (45.0, 10.0, "abnormal_closure"),
        (None, None, "abnormal_closure"),
    ],
)
def test_a_drop_is_matched_against_known_timeouts(
    since_open: float | None, idle: float | None, cause: str
) -> None:
    assert drop_diagnosis(since_open, idle).cause == cause


def test_every_known_limit_names_a_cause_of_the_table() -> None:
    assert {cause for _, _, cause in KNOWN_LIMITS} <= set(CAUSES)
    assert [limit for limit, _, _ in KNOWN_LIMITS] == [30.0, 60.0, 100.0, 300.0, 3600.0]


def test_network_causes_are_in_the_table() -> None:
    for cause in ("dns_failure", "connection_refused", "tls_error", "timeout", "abnormal_closure"):
        assert diagnosis(cause).cause == cause
    with pytest.raises(KeyError):
        diagnosis("no_such_cause")
