"""The one place that decides the deployment tier.

Everything that depends on the tier (authentication, session rules, E2E test
mode, diagnostics, startup checks) asks :func:`detect_tier`; nothing else reads
``ENVIRONMENT``, ``GOOGLE_CLOUD_PROJECT`` or ``K_SERVICE``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from chatgate.errors import ConfigError


class Tier(enum.StrEnum):
    """Deployment tiers, from the most to the least permissive."""

    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


_ENVIRONMENT_NAMES: dict[str, Tier] = {
    "production": Tier.PRODUCTION,
    "prod": Tier.PRODUCTION,
    "staging": Tier.STAGING,
    "stage": Tier.STAGING,
    "development": Tier.DEVELOPMENT,
    "dev": Tier.DEVELOPMENT,
    "local": Tier.DEVELOPMENT,
    "test": Tier.TEST,
    "testing": Tier.TEST,
}
_STAGING_TOKENS = frozenset({"staging", "stage"})
_PRODUCTION_TOKENS = frozenset({"prod", "production"})
_TOKEN_SPLIT = re.compile(r"[-_.]")


@dataclass(frozen=True, slots=True)
class TierDecision:
    """The tier and the variable that decided it.

    ``source`` is ``"ENVIRONMENT"``, ``"K_SERVICE"``, ``"GOOGLE_CLOUD_PROJECT"``,
    ``"K_SERVICE (Cloud Run without a tier name: fail safe)"`` or ``"default"``.
    ``inferred`` is true when the tier came from the service or project names.
    """

    tier: Tier
    source: str
    inferred: bool


def _tokens(name: str) -> frozenset[str]:
    return frozenset(token for token in _TOKEN_SPLIT.split(name.lower()) if token)


def _infer(name: str) -> Tier | None:
    tokens = _tokens(name)
    if tokens & _PRODUCTION_TOKENS:
        return Tier.PRODUCTION
    if tokens & _STAGING_TOKENS:
        return Tier.STAGING
    return None


def detect_tier(
    environment: str | None,
    google_cloud_project: str | None,
    k_service: str | None,
) -> TierDecision:
    """Decide the tier from the three variables (docs/protocol.md section 3).

    Raises:
        ConfigError: ``ENVIRONMENT`` is set to a name that is not a known tier.
    """
    env = (environment or "").strip()
    if env:
        tier = _ENVIRONMENT_NAMES.get(env.lower())
        if tier is None:
            known = ", ".join(sorted(_ENVIRONMENT_NAMES))
            raise ConfigError("ENVIRONMENT", f"unknown tier name; use one of: {known}")
        return TierDecision(tier, "ENVIRONMENT", inferred=False)

    service = (k_service or "").strip()
    project = (google_cloud_project or "").strip()
    inferred = {
        name: _infer(value)
        for name, value in (("K_SERVICE", service), ("GOOGLE_CLOUD_PROJECT", project))
    }
    # Production wins over staging when the two names disagree: failing safe
    # means the stricter tier.
    for wanted in (Tier.PRODUCTION, Tier.STAGING):
        for variable, tier in inferred.items():
            if tier is wanted:
                return TierDecision(wanted, variable, inferred=True)
    if service:
        return TierDecision(
            Tier.PRODUCTION, "K_SERVICE (Cloud Run without a tier name: fail safe)", inferred=True
        )
    return TierDecision(Tier.DEVELOPMENT, "default", inferred=False)
