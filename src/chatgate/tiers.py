"""The one place that decides the deployment tier.

Everything that depends on the tier (authentication, session rules, E2E test
mode, diagnostics, startup checks) asks :func:`detect_tier`; nothing else reads
``ENVIRONMENT``, ``GOOGLE_CLOUD_PROJECT``, ``K_SERVICE`` or
``KUBERNETES_SERVICE_HOST``. When nothing names a tier, it fails closed: only a
server listening on loopback alone is development.
"""

from __future__ import annotations

import enum
import ipaddress
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

CLOUD_RUN_FAIL_SAFE = "K_SERVICE (Cloud Run without a tier name: fail safe)"
KUBERNETES_FAIL_SAFE = "KUBERNETES_SERVICE_HOST (Kubernetes without a tier name: fail safe)"
LOOPBACK_ONLY = "listen address (loopback only)"
NOT_LOOPBACK = "listen address (not loopback: fail closed)"


@dataclass(frozen=True, slots=True)
class TierDecision:
    """The tier and the variable that decided it.

    ``source`` is ``"ENVIRONMENT"``, ``"K_SERVICE"``, ``"GOOGLE_CLOUD_PROJECT"``,
    :data:`CLOUD_RUN_FAIL_SAFE`, :data:`KUBERNETES_FAIL_SAFE`, :data:`LOOPBACK_ONLY`
    or :data:`NOT_LOOPBACK`. ``inferred`` is true when the tier came from the
    platform: the service or project names, or running on Cloud Run or Kubernetes.
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


def listens_on_loopback_only(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine alone.

    ``localhost``, ``127.0.0.0/8`` and ``::1`` are; a wildcard (``0.0.0.0``,
    ``::``, empty), any other address and any other name are not.
    """
    name = host.strip().lower().strip("[]")
    if name in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def detect_tier(
    environment: str | None,
    google_cloud_project: str | None,
    k_service: str | None,
    *,
    listen_host: str,
    kubernetes_service_host: str | None = None,
) -> TierDecision:
    """Decide the tier (docs/protocol.md section 3), first matching rule wins.

    ``ENVIRONMENT``; then the tier tokens of ``K_SERVICE`` and
    ``GOOGLE_CLOUD_PROJECT``; then Cloud Run or Kubernetes without a tier name,
    production; then the address the server listens on, development only on
    loopback.

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
        return TierDecision(Tier.PRODUCTION, CLOUD_RUN_FAIL_SAFE, inferred=True)
    if (kubernetes_service_host or "").strip():
        return TierDecision(Tier.PRODUCTION, KUBERNETES_FAIL_SAFE, inferred=True)
    # A container or VM that forgot ENVIRONMENT must not come up as development,
    # with E2E mode on and diagnostics open: only a laptop-only listener is.
    if listens_on_loopback_only(listen_host):
        return TierDecision(Tier.DEVELOPMENT, LOOPBACK_ONLY, inferred=False)
    return TierDecision(Tier.PRODUCTION, NOT_LOOPBACK, inferred=False)
