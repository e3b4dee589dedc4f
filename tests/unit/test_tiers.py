"""The one tier detector, table-driven over docs/protocol.md section 3."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from chatgate.errors import ConfigError
from chatgate.settings import load_settings
from chatgate.tiers import (
    CLOUD_RUN_FAIL_SAFE,
    KUBERNETES_FAIL_SAFE,
    LOOPBACK_ONLY,
    NOT_LOOPBACK,
    Tier,
    detect_tier,
    listens_on_loopback_only,
)

FAIL_SAFE = CLOUD_RUN_FAIL_SAFE
ENV = "ENVIRONMENT"
KS = "K_SERVICE"
GCP = "GOOGLE_CLOUD_PROJECT"
# The table below runs on a laptop: listening on loopback, nothing else deciding.
DEFAULT = LOOPBACK_ONLY


class Row(NamedTuple):
    environment: str | None
    project: str | None
    service: str | None
    tier: Tier
    source: str


P, S, D, T = Tier.PRODUCTION, Tier.STAGING, Tier.DEVELOPMENT, Tier.TEST

ROWS: dict[str, Row] = {
    # Nothing set.
    "nothing-set": Row(None, None, None, D, DEFAULT),
    "all-empty-strings": Row("", "", "", D, DEFAULT),
    "environment-blank-is-unset": Row("   ", None, None, D, DEFAULT),
    # ENVIRONMENT names and aliases, case and whitespace.
    "env-production": Row("production", None, None, P, ENV),
    "env-prod": Row("prod", None, None, P, ENV),
    "env-PROD-upper": Row("PROD", None, None, P, ENV),
    "env-Production-padded": Row("  Production\t", None, None, P, ENV),
    "env-staging": Row("staging", None, None, S, ENV),
    "env-stage": Row("stage", None, None, S, ENV),
    "env-Staging-padded": Row(" Staging ", None, None, S, ENV),
    "env-STAGE-upper": Row("STAGE", None, None, S, ENV),
    "env-development": Row("development", None, None, D, ENV),
    "env-dev": Row("dev", None, None, D, ENV),
    "env-local": Row("local", None, None, D, ENV),
    "env-Local-mixed": Row("Local", None, None, D, ENV),
    "env-test": Row("test", None, None, T, ENV),
    "env-testing": Row("testing", None, None, T, ENV),
    "env-Testing-newline": Row("\tTesting\n", None, None, T, ENV),
    # ENVIRONMENT wins over every inferred signal.
    "env-production-beats-staging-service": Row("production", None, "chat-staging", P, ENV),
    "env-staging-beats-prod-project": Row("staging", "acme-prod", None, S, ENV),
    "env-staging-beats-prod-service": Row("staging", None, "chat-prod", S, ENV),
    "env-dev-beats-prod-service": Row("dev", "acme-prod", "chat-prod", D, ENV),
    "env-test-beats-cloud-run-fail-safe": Row("test", None, "chat", T, ENV),
    # Whole-token inference from K_SERVICE.
    "service-chat-staging": Row(None, None, "chat-staging", S, KS),
    "service-chat_stage": Row(None, None, "chat_stage", S, KS),
    "service-upper-CHAT-STAGING": Row(None, None, "CHAT-STAGING", S, KS),
    "service-padded": Row(None, None, " chat-staging ", S, KS),
    "service-chat-prod": Row(None, None, "chat-prod", P, KS),
    "service-bare-prod": Row(None, None, "prod", P, KS),
    "service-production.eu": Row(None, None, "chat.production.eu", P, KS),
    # Whole-token inference from GOOGLE_CLOUD_PROJECT.
    "project-acme.prod.eu": Row(None, "acme.prod.eu", None, P, GCP),
    "project-acme-production": Row(None, "acme-production", None, P, GCP),
    "project-acme-staging": Row(None, "acme-staging", None, S, GCP),
    "project-acme.staging": Row(None, "acme.staging", None, S, GCP),
    "project-empty-tokens-ignored": Row(None, "acme--staging", None, S, GCP),
    # Substrings are not tokens.
    "project-product-api-is-not-prod": Row(None, "product-api", None, D, DEFAULT),
    "project-prodigy-is-not-prod": Row(None, "prodigy", None, D, DEFAULT),
    "project-stagecoach-is-not-staging": Row(None, "stagecoach", None, D, DEFAULT),
    "project-backstage-is-not-staging": Row(None, "acme-backstage", None, D, DEFAULT),
    "project-without-tier-token": Row(None, "my-project", None, D, DEFAULT),
    "project-dev-token-is-default": Row(None, "acme-dev", None, D, DEFAULT),
    # Both tokens: production (the stricter tier).
    "project-staging-and-prod-tokens": Row(None, "acme-staging-prod", None, P, GCP),
    "service-stage-and-production-tokens": Row(None, None, "stage-production", P, KS),
    "staging-service-prod-project": Row(None, "acme-prod", "chat-staging", P, GCP),
    "prod-service-staging-project": Row(None, "acme-staging", "chat-prod", P, KS),
    # Cloud Run (K_SERVICE set) without a tier token: production, fail safe.
    "service-product-api-fail-safe": Row(None, None, "product-api", P, FAIL_SAFE),
    "service-plain-fail-safe": Row(None, None, "chat", P, FAIL_SAFE),
    "service-prodigy-fail-safe": Row(None, None, "prodigy", P, FAIL_SAFE),
    "service-stagecoach-fail-safe": Row(None, None, "stagecoach", P, FAIL_SAFE),
    "service-dev-token-fail-safe": Row(None, None, "chat-dev", P, FAIL_SAFE),
    "service-no-token-project-no-token": Row(None, "my-project", "chat", P, FAIL_SAFE),
    # A project token decides even on Cloud Run.
    "service-no-token-staging-project": Row(None, "acme-staging", "chat", S, GCP),
    "service-no-token-prod-project": Row(None, "acme-prod", "chat", P, GCP),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_detect_tier(row: Row) -> None:
    decision = detect_tier(row.environment, row.project, row.service, listen_host="127.0.0.1")
    assert decision.tier is row.tier
    assert decision.source == row.source
    assert decision.inferred is (row.source in {KS, GCP, FAIL_SAFE})


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 30


@pytest.mark.parametrize(
    "environment",
    ["qa", "prd", "production1", "prod-eu", "live", "staging production", "developer"],
)
def test_unknown_environment_is_a_config_error_naming_environment(environment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        detect_tier(environment, "acme-staging", "chat-staging", listen_host="127.0.0.1")
    assert caught.value.variable == "ENVIRONMENT"
    assert str(caught.value).startswith("ENVIRONMENT:")


@pytest.mark.parametrize(
    ("variables", "tier", "source"),
    [
        ({"ENVIRONMENT": " Staging "}, S, ENV),
        ({"K_SERVICE": "chat-staging", "GOOGLE_CLOUD_PROJECT": "acme"}, S, KS),
        ({"GOOGLE_CLOUD_PROJECT": "acme.prod.eu"}, P, GCP),
        ({"K_SERVICE": "product-api"}, P, FAIL_SAFE),
        ({}, D, DEFAULT),
        ({"CHATGATE_HOST": "0.0.0.0"}, P, NOT_LOOPBACK),  # noqa: S104
        ({"CHATGATE_HOST": "::1"}, D, LOOPBACK_ONLY),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, P, KUBERNETES_FAIL_SAFE),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "ENVIRONMENT": "dev"}, D, ENV),
    ],
    ids=[
        "env",
        "service",
        "project",
        "fail-safe",
        "nothing",
        "all-interfaces",
        "ipv6-loopback",
        "kubernetes",
        "kubernetes-with-environment",
    ],
)
def test_settings_ask_the_detector(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], tier: Tier, source: str
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    decision = load_settings().tier_decision
    assert (decision.tier, decision.source) == (tier, source)


def test_settings_refuse_an_unknown_environment_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "qa")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "ENVIRONMENT"


class Listen(NamedTuple):
    host: str
    kubernetes: str | None
    tier: Tier
    source: str


K8S = "10.96.0.1"

# Nothing names a tier: the platform, then the listening address decides (fail closed).
LISTEN_ROWS: dict[str, Listen] = {
    "ipv4-loopback": Listen("127.0.0.1", None, D, LOOPBACK_ONLY),
    "ipv4-loopback-range": Listen("127.0.0.2", None, D, LOOPBACK_ONLY),
    "ipv4-loopback-top": Listen("127.255.255.254", None, D, LOOPBACK_ONLY),
    "ipv6-loopback": Listen("::1", None, D, LOOPBACK_ONLY),
    "ipv6-loopback-bracketed": Listen("[::1]", None, D, LOOPBACK_ONLY),
    "localhost": Listen("localhost", None, D, LOOPBACK_ONLY),
    "localhost-upper": Listen("LocalHost", None, D, LOOPBACK_ONLY),
    "all-ipv4": Listen("0.0.0.0", None, P, NOT_LOOPBACK),  # noqa: S104
    "all-ipv6": Listen("::", None, P, NOT_LOOPBACK),
    "wildcard-empty": Listen("", None, P, NOT_LOOPBACK),
    "pod-ip": Listen("10.12.3.4", None, P, NOT_LOOPBACK),
    "lan-ip": Listen("192.168.1.20", None, P, NOT_LOOPBACK),
    "ipv6-global": Listen("2001:db8::1", None, P, NOT_LOOPBACK),
    "a-hostname": Listen("chat.internal", None, P, NOT_LOOPBACK),
    "localhost-lookalike": Listen("localhost.evil.example", None, P, NOT_LOOPBACK),
    "loopback-lookalike": Listen("127.0.0.1.nip.io", None, P, NOT_LOOPBACK),
    "kubernetes-on-loopback": Listen("127.0.0.1", K8S, P, KUBERNETES_FAIL_SAFE),
    "kubernetes-on-all": Listen("0.0.0.0", K8S, P, KUBERNETES_FAIL_SAFE),  # noqa: S104
    "kubernetes-blank-is-unset": Listen("127.0.0.1", "  ", D, LOOPBACK_ONLY),
}


@pytest.mark.parametrize("row", list(LISTEN_ROWS.values()), ids=list(LISTEN_ROWS))
def test_nothing_named_follows_platform_then_listen_address(row: Listen) -> None:
    decision = detect_tier(
        None, None, None, listen_host=row.host, kubernetes_service_host=row.kubernetes
    )
    assert (decision.tier, decision.source) == (row.tier, row.source)
    assert decision.inferred is (row.source == KUBERNETES_FAIL_SAFE)


@pytest.mark.parametrize(
    ("environment", "project", "service", "tier", "source"),
    [
        ("dev", None, None, D, ENV),
        (None, "acme-staging", None, S, GCP),
        (None, None, "chat-staging", S, KS),
        (None, None, "chat", P, FAIL_SAFE),
        (None, "my-project", None, P, KUBERNETES_FAIL_SAFE),
    ],
    ids=["environment", "project", "service", "cloud-run", "project-without-token"],
)
def test_names_decide_before_kubernetes(
    environment: str | None, project: str | None, service: str | None, tier: Tier, source: str
) -> None:
    decision = detect_tier(
        environment, project, service, listen_host="127.0.0.1", kubernetes_service_host=K8S
    )
    assert (decision.tier, decision.source) == (tier, source)


def test_a_project_without_a_tier_token_follows_the_listen_address() -> None:
    on_all = detect_tier(None, "my-project", None, listen_host="0.0.0.0")  # noqa: S104
    on_loopback = detect_tier(None, "my-project", None, listen_host="127.0.0.1")
    assert (on_all.tier, on_all.source) == (P, NOT_LOOPBACK)
    assert (on_loopback.tier, on_loopback.source) == (D, LOOPBACK_ONLY)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_loopback_names(host: str) -> None:
    assert listens_on_loopback_only(host) is True


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "", "10.0.0.1", "example.com", "localhost:80"],  # noqa: S104
)
def test_not_loopback(host: str) -> None:
    assert listens_on_loopback_only(host) is False
