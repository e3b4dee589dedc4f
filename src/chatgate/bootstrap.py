"""Turning settings into a ready application, failing at boot on anything that cannot work."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from pydantic import SecretStr

from chatgate.agents.loader import load_agent
from chatgate.app import GatewayApp, create_app
from chatgate.auth.minting import mint_token
from chatgate.broker.base import BrokerOptions, open_broker
from chatgate.errors import ConfigError
from chatgate.gateway import Gateway, build_gateway
from chatgate.logs import get_logger
from chatgate.settings import Settings
from chatgate.store.base import StoreOptions, open_store
from chatgate.tiers import Tier

log = get_logger("chatgate.boot")

DEV_USER = "dev"
DEV_TOKEN_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class Booted:
    """A wired application; ``dev_token`` is set when an ephemeral secret was generated."""

    settings: Settings
    gateway: Gateway
    app: GatewayApp
    dev_token: str | None = field(default=None, repr=False)


def _with_signing_key(settings: Settings) -> tuple[Settings, str | None]:
    """Generate an ephemeral HS256 secret in development and test when no key is configured."""
    if settings.jwt_secret or settings.jwt_public_key or settings.jwks_url:
        return settings, None
    tier = settings.tier_decision.tier
    if tier not in {Tier.DEVELOPMENT, Tier.TEST}:
        raise ConfigError(
            "CHATGATE_JWT_SECRET",
            f"required in the {tier} tier (or CHATGATE_JWT_PUBLIC_KEY / CHATGATE_JWKS_URL)",
        )
    secret = secrets.token_urlsafe(32)
    updated = settings.model_copy(
        update={"jwt_secret": SecretStr(secret), "jwt_algorithms": "HS256"}
    )
    return updated, mint_token(secret, DEV_USER, ttl_s=DEV_TOKEN_TTL_S)


def _check_e2e(settings: Settings, gateway: Gateway) -> None:
    """Refuse E2E test mode in production; say once per process how E2E mode was decided."""
    policy = gateway.e2e
    if policy.tier is Tier.PRODUCTION:
        if settings.e2e_testing:
            raise ConfigError(
                "E2E_TESTING", "must not be set in production: test tokens never work there"
            )
        if settings.e2e_oauth_simulation_key is not None:
            log.warning("E2E_OAUTH_SIMULATION_KEY is set in production; it is ignored")
        return
    if settings.disable_enhanced_e2e_detection:
        log.info("E2E DETECTION: disabled by DISABLE_ENHANCED_E2E_DETECTION")
    elif policy.via_staging_auto_detection:
        log.info("ENHANCED E2E DETECTION: Auto-enabled for staging environment")
    if policy.enabled and settings.e2e_oauth_simulation_key is None:
        # Expected on a laptop (development and test are always in E2E mode),
        # a likely mistake in staging.
        report = log.warning if policy.tier is Tier.STAGING else log.info
        report(
            "E2E test mode is on but E2E_OAUTH_SIMULATION_KEY is not set: "
            "test tokens will close 4003 auth_invalid"
        )


def boot(settings: Settings) -> Booted:
    """Check the configuration and wire the gateway.

    Raises:
        ConfigError: anything that would otherwise fail at the first connection.
    """
    settings, dev_token = _with_signing_key(settings)
    agent = load_agent(settings.agent, demo_delay_ms=settings.demo_delay_ms)
    store = open_store(settings.database_url, StoreOptions.from_settings(settings))
    broker = open_broker(settings.broker_url, BrokerOptions.from_settings(settings))
    gateway = build_gateway(settings, agent, store, broker)
    _check_e2e(settings, gateway)
    return Booted(settings, gateway, create_app(gateway), dev_token)
