"""E2E test mode, table-driven over docs/protocol.md section 3, through the real settings."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from chatgate.e2e import POLICY_VERSION, carries_test_headers, decide_e2e
from chatgate.gateway import e2e_policy_for
from chatgate.settings import load_settings
from chatgate.tiers import Tier, TierDecision

P, S, D, T = Tier.PRODUCTION, Tier.STAGING, Tier.DEVELOPMENT, Tier.TEST


class Row(NamedTuple):
    variables: dict[str, str]
    tier: Tier
    enabled: bool
    via_env_vars: bool
    via_staging: bool
    enhanced: bool


def row(tier: Tier, flags: str, **variables: str) -> Row:
    """``flags`` spells enabled, via_env_vars, via_staging, enhanced as 1/0."""
    enabled, env_vars, staging, enhanced = (ch == "1" for ch in flags)
    names = {
        "env": "ENVIRONMENT",
        "gcp": "GOOGLE_CLOUD_PROJECT",
        "ks": "K_SERVICE",
        "e2e": "E2E_TESTING",
        "off": "DISABLE_ENHANCED_E2E_DETECTION",
    }
    return Row(
        {names[key]: value for key, value in variables.items()},
        tier,
        enabled,
        env_vars,
        staging,
        enhanced,
    )


ROWS: dict[str, Row] = {
    # Development and test: always on; the rollback flag does not turn them off.
    "nothing-set": row(D, "1001"),
    "dev": row(D, "1001", env="development"),
    "dev-rollback": row(D, "1000", env="dev", off="1"),
    "local-e2e": row(D, "1101", env="local", e2e="1"),
    "e2e-true-only": row(D, "1101", e2e="true"),
    "rollback-only": row(D, "1000", off="1"),
    "project-without-token": row(D, "1001", gcp="my-project"),
    "product-api-project-e2e": row(D, "1101", gcp="product-api", e2e="1"),
    "test": row(T, "1001", env="test"),
    "testing-rollback": row(T, "1000", env="testing", off="1"),
    "test-e2e-rollback": row(T, "1100", env="test", e2e="1", off="1"),
    "dev-beats-prod-service": row(D, "1001", env="dev", ks="chat-prod"),
    # Staging from ENVIRONMENT.
    "staging": row(S, "1011", env="staging"),
    "staging-padded": row(S, "1011", env=" Staging "),
    "staging-e2e": row(S, "1111", env="STAGING", e2e="true"),
    "staging-flags-zero": row(S, "1011", env="staging", e2e="0", off="0"),
    "stage-rollback": row(S, "0000", env="stage", off="1"),
    "staging-rollback-true": row(S, "0000", env="staging", off="true"),
    "staging-rollback-e2e": row(S, "1100", env="staging", e2e="1", off="1"),
    "staging-beats-prod-project": row(S, "1011", env="staging", gcp="acme-prod"),
    # Staging inferred from K_SERVICE / GOOGLE_CLOUD_PROJECT.
    "service-staging": row(S, "1011", ks="chat-staging"),
    "service-staging-rollback": row(S, "0000", ks="chat-staging", off="1"),
    "service-staging-rollback-e2e": row(S, "1100", ks="chat-staging", off="1", e2e="1"),
    "project-staging": row(S, "1011", gcp="acme-staging"),
    "project-stage-rollback": row(S, "0000", gcp="acme-stage", off="1"),
    "both-staging": row(S, "1011", gcp="acme-staging", ks="chat-staging"),
    "cloud-run-staging-project": row(S, "1011", gcp="acme-staging", ks="chat"),
    # Production: never on, whatever else is set.
    "production": row(P, "0001", env="production"),
    "prod-e2e": row(P, "0001", env="prod", e2e="1"),
    "prod-e2e-staging-project": row(P, "0001", env="production", e2e="1", gcp="acme-staging"),
    "prod-staging-service": row(P, "0001", env="production", ks="chat-staging"),
    "prod-staging-service-e2e": row(P, "0001", env="production", ks="chat-staging", e2e="1"),
    "prod-rollback-e2e": row(P, "0000", env="production", e2e="1", off="1"),
    "service-prod": row(P, "0001", ks="chat-prod"),
    "service-prod-e2e": row(P, "0001", ks="chat-prod", e2e="1"),
    "project-prod-e2e": row(P, "0001", gcp="acme.prod.eu", e2e="1"),
    "staging-service-prod-project-e2e": row(P, "0001", ks="chat-staging", gcp="acme-prod", e2e="1"),
    "product-api-service-fail-safe": row(P, "0001", ks="product-api"),
    "product-api-service-e2e": row(P, "0001", ks="product-api", e2e="1"),
    "cloud-run-no-token-e2e": row(P, "0001", ks="chat", e2e="1"),
    "cloud-run-no-token-all-flags": row(P, "0000", ks="chat", gcp="my-project", e2e="1", off="1"),
}


@pytest.mark.parametrize("case", list(ROWS.values()), ids=list(ROWS))
def test_policy_from_settings(monkeypatch: pytest.MonkeyPatch, case: Row) -> None:
    for name, value in case.variables.items():
        monkeypatch.setenv(name, value)
    policy = e2e_policy_for(load_settings())
    context = policy.context()

    assert policy.tier is case.tier
    assert policy.enabled is case.enabled
    assert context["is_e2e_testing"] is case.enabled
    assert context["environment"] == case.tier.value
    assert context["detection_method"] == {
        "via_headers": False,
        "via_environment": case.enabled,
        "via_env_vars": case.via_env_vars,
        "via_staging_auto_detection": case.via_staging,
    }
    assert context["enhanced_detection"] is case.enhanced
    assert context["google_cloud_project"] == case.variables.get("GOOGLE_CLOUD_PROJECT")
    assert context["k_service"] == case.variables.get("K_SERVICE")
    assert context["policy_version"] == POLICY_VERSION


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 30


def test_production_is_never_enabled_by_any_flag_combination() -> None:
    decision = TierDecision(Tier.PRODUCTION, "ENVIRONMENT", inferred=False)
    for e2e_testing in (False, True):
        for disable in (False, True):
            policy = decide_e2e(
                decision, e2e_testing=e2e_testing, disable_enhanced_detection=disable
            )
            assert policy.enabled is False
            assert policy.via_environment is False
            assert policy.via_env_vars is False
            assert policy.via_staging_auto_detection is False


class Direct(NamedTuple):
    tier: Tier
    inferred: bool
    e2e_testing: bool
    disable: bool
    enabled: bool
    via_staging: bool


DIRECT: dict[str, Direct] = {
    "inferred-staging": Direct(Tier.STAGING, True, False, False, True, True),
    "staging-rollback": Direct(Tier.STAGING, True, False, True, False, False),
    "staging-rollback-e2e": Direct(Tier.STAGING, False, True, True, True, False),
    "test": Direct(Tier.TEST, False, False, True, True, False),
    "dev": Direct(Tier.DEVELOPMENT, False, False, True, True, False),
}


@pytest.mark.parametrize("case", list(DIRECT.values()), ids=list(DIRECT))
def test_decide_e2e_directly(case: Direct) -> None:
    policy = decide_e2e(
        TierDecision(case.tier, "K_SERVICE" if case.inferred else "ENVIRONMENT", case.inferred),
        e2e_testing=case.e2e_testing,
        disable_enhanced_detection=case.disable,
        google_cloud_project="acme-x",
        k_service="svc-x",
    )
    assert policy.enabled is case.enabled
    assert policy.via_staging_auto_detection is case.via_staging
    assert policy.via_env_vars is case.e2e_testing
    assert policy.enhanced_detection is not case.disable
    assert policy.context()["google_cloud_project"] == "acme-x"
    assert policy.context()["k_service"] == "svc-x"


def test_via_headers_is_recorded_only_when_passed() -> None:
    policy = decide_e2e(
        TierDecision(Tier.STAGING, "ENVIRONMENT", inferred=False),
        e2e_testing=False,
        disable_enhanced_detection=False,
    )
    assert policy.context()["detection_method"]["via_headers"] is False
    assert policy.context(via_headers=True)["detection_method"]["via_headers"] is True


def test_headers_grant_nothing_in_production() -> None:
    policy = decide_e2e(
        TierDecision(Tier.PRODUCTION, "ENVIRONMENT", inferred=False),
        e2e_testing=False,
        disable_enhanced_detection=False,
    )
    context = policy.context(via_headers=True)
    assert context["detection_method"]["via_headers"] is True
    assert context["is_e2e_testing"] is False
    assert policy.enabled is False


@pytest.mark.parametrize(
    "headers",
    [
        ["X-E2E-Test"],
        ["x-e2e-test"],
        ["X-Test-Mode"],
        ["x-test-mode"],
        ["X-E2E-BYPASS"],
        ["x-environment"],
        ["X-Test"],
        ["X-E2E"],
        ["host", "origin", "X-Test-Mode", "user-agent"],
    ],
)
def test_carries_test_headers(headers: list[str]) -> None:
    assert carries_test_headers(headers) is True


@pytest.mark.parametrize(
    "headers",
    [
        [],
        ["host", "origin", "user-agent", "authorization", "sec-websocket-protocol"],
        ["x-forwarded-for", "x-request-id", "x-e2e-tests", "x-testing"],
    ],
    ids=["none", "ordinary", "near-misses"],
)
def test_ordinary_headers_are_not_test_headers(headers: list[str]) -> None:
    assert carries_test_headers(headers) is False
