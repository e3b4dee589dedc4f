"""E2E test mode: whether this deployment accepts test tokens, and why.

Derived only from the tier detector's decision and two flags, so the answer
cannot disagree with anything else that asks about the tier. E2E mode never
skips a check: it only lets the token verifier accept tokens signed with the
dedicated E2E key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chatgate.tiers import Tier, TierDecision

POLICY_VERSION = "2026-11.1"
TEST_KEY_ID = "e2e"
TEST_SUBJECT_PREFIX = "e2e:"
MAX_TEST_TOKEN_LIFETIME_S = 3600

TEST_MARKING_HEADERS = frozenset(
    {"x-e2e-test", "x-test-mode", "x-e2e-bypass", "x-environment", "x-test", "x-e2e"}
)
"""Headers that claim a test context. Recorded as ``via_headers``; they grant nothing."""


@dataclass(frozen=True, slots=True)
class E2EPolicy:
    """Whether test tokens are accepted, and which signals turned the mode on."""

    enabled: bool
    tier: Tier
    via_env_vars: bool
    via_staging_auto_detection: bool
    enhanced_detection: bool
    google_cloud_project: str | None
    k_service: str | None

    @property
    def via_environment(self) -> bool:
        """E2E mode is on because of the environment at all."""
        return self.enabled

    def context(self, *, via_headers: bool = False) -> dict[str, Any]:
        """The E2E context of docs/protocol.md section 3, as sent to clients and diagnostics."""
        return {
            "is_e2e_testing": self.enabled,
            "detection_method": {
                "via_headers": via_headers,
                "via_environment": self.via_environment,
                "via_env_vars": self.via_env_vars,
                "via_staging_auto_detection": self.via_staging_auto_detection,
            },
            "environment": self.tier.value,
            "google_cloud_project": self.google_cloud_project,
            "k_service": self.k_service,
            "enhanced_detection": self.enhanced_detection,
            "policy_version": POLICY_VERSION,
        }


def decide_e2e(
    decision: TierDecision,
    *,
    e2e_testing: bool,
    disable_enhanced_detection: bool,
    google_cloud_project: str | None = None,
    k_service: str | None = None,
) -> E2EPolicy:
    """Decide E2E test mode from the tier and the two flags (docs/protocol.md section 3)."""
    tier = decision.tier
    production = tier is Tier.PRODUCTION
    via_env_vars = e2e_testing and not production
    via_staging = tier is Tier.STAGING and not disable_enhanced_detection
    development = tier in {Tier.DEVELOPMENT, Tier.TEST}
    return E2EPolicy(
        enabled=not production and (via_env_vars or via_staging or development),
        tier=tier,
        via_env_vars=via_env_vars,
        via_staging_auto_detection=via_staging,
        enhanced_detection=not disable_enhanced_detection,
        google_cloud_project=google_cloud_project,
        k_service=k_service,
    )


def carries_test_headers(header_names: Iterable[str]) -> bool:
    """Whether a handshake carried headers that claim a test context (they grant nothing)."""
    return any(name.lower() in TEST_MARKING_HEADERS for name in header_names)
