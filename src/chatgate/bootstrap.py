"""Turning settings into a ready application, failing at boot on anything that cannot work."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from chatgate.agents.loader import load_agent
from chatgate.app import GatewayApp, create_app
from chatgate.auth.dev_secret import dev_secret, dev_secret_path
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
    """A wired application; ``dev_token`` is set when the development secret signs it.

    ``dev_secret_path`` is the file the development secret is kept in, or None
    when it was generated for this process only.
    """

    settings: Settings
    gateway: Gateway
    app: GatewayApp
    dev_token: str | None = field(default=None, repr=False)
    dev_secret_path: Path | None = None


def _with_signing_key(settings: Settings) -> tuple[Settings, str | None, Path | None]:
    """Use (or generate) the development secret when no key is configured.

    Raises:
        ConfigError: no key is configured outside development and test.
    """
    if settings.jwt_secret or settings.jwt_public_key or settings.jwks_url:
        return settings, None, None
    tier = settings.tier_decision.tier
    if tier not in {Tier.DEVELOPMENT, Tier.TEST}:
        raise ConfigError(
            "CHATGATE_JWT_SECRET",
            f"required in the {tier} tier (or CHATGATE_JWT_PUBLIC_KEY / CHATGATE_JWKS_URL)",
        )
    path = dev_secret_path(settings)
    secret = secrets.token_urlsafe(32) if path is None else dev_secret(path)
    updated = settings.model_copy(
        update={"jwt_secret": SecretStr(secret), "jwt_algorithms": "HS256"}
    )
    return updated, mint_token(secret, DEV_USER, ttl_s=DEV_TOKEN_TTL_S), path


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
        if policy.tier is Tier.STAGING:
            log.warning(
                "E2E test mode is on but E2E_OAUTH_SIMULATION_KEY is not set: "
                "test tokens will close 4003 auth_invalid"
            )
        else:
            # Development and test are always in E2E mode; most people never
            # use it, so this is a note, not a warning.
            log.info(
                "E2E test tokens are accepted in this tier once E2E_OAUTH_SIMULATION_KEY "
                "is set; see docs/e2e-testing.md"
            )


def boot(settings: Settings) -> Booted:
    """Check the configuration and wire the gateway.

    Raises:
        ConfigError: anything that would otherwise fail at the first connection.
    """
    settings, dev_token, secret_path = _with_signing_key(settings)
    agent = load_agent(settings.agent, demo_delay_ms=settings.demo_delay_ms, settings=settings)
    store = open_store(settings.database_url, StoreOptions.from_settings(settings))
    broker = open_broker(settings.broker_url, BrokerOptions.from_settings(settings))
    gateway = build_gateway(settings, agent, store, broker)
    _check_e2e(settings, gateway)
    return Booted(settings, gateway, create_app(gateway), dev_token, secret_path)
