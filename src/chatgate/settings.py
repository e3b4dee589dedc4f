"""Configuration: every environment variable, read once at startup, validated.

Bad configuration raises :class:`~chatgate.errors.ConfigError` naming the
variable, so that ``chatgate serve`` stops at boot (exit 2) instead of the
first user discovering it. Secrets are ``SecretStr``: their ``repr`` hides them.
"""

from __future__ import annotations

import functools
import hmac
import os
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatgate.errors import ConfigError
from chatgate.tiers import TierDecision, detect_tier

HS_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_PREFIX = "CHATGATE_"
MIN_HMAC_KEY_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key at least as long as the hash."""

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class Settings(BaseSettings):
    """All of chatgate's configuration. Field ``x`` is ``CHATGATE_X`` unless aliased."""

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX,
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # Deployment tier (docs/protocol.md section 3); read only by chatgate.tiers.
    environment: str | None = Field(default=None, validation_alias="ENVIRONMENT")
    google_cloud_project: str | None = Field(default=None, validation_alias="GOOGLE_CLOUD_PROJECT")
    k_service: str | None = Field(default=None, validation_alias="K_SERVICE")
    kubernetes_service_host: str | None = Field(
        default=None, validation_alias="KUBERNETES_SERVICE_HOST"
    )

    # E2E test mode.
    e2e_testing: bool = Field(default=False, validation_alias="E2E_TESTING")
    disable_enhanced_e2e_detection: bool = Field(
        default=False, validation_alias="DISABLE_ENHANCED_E2E_DETECTION"
    )
    e2e_oauth_simulation_key: SecretStr | None = Field(
        default=None, validation_alias="E2E_OAUTH_SIMULATION_KEY"
    )

    # Listening.
    host: str | None = None
    port: int = Field(
        default=8000, ge=0, le=65535, validation_alias=AliasChoices("CHATGATE_PORT", "PORT")
    )

    # JWT verification.
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwks_url: str | None = None
    jwt_algorithms: str = "HS256"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_cache_s: PositiveFloat = 300.0

    # Limits (docs/protocol.md section 6).
    auth_timeout_s: PositiveFloat = 5.0
    max_message_bytes: PositiveInt = 65536
    rate_limit_messages: PositiveInt = 20
    rate_limit_window_s: PositiveFloat = 10.0
    max_connections_per_user: PositiveInt = 10
    heartbeat_interval_s: PositiveFloat = 20.0
    heartbeat_timeout_s: PositiveFloat = 20.0
    send_queue_bytes: PositiveInt = 1024 * 1024
    max_invalid_frames: PositiveInt = 10
    max_runs_per_connection: PositiveInt = 4
    # Across all of a user's sockets, and instances when the broker is shared.
    max_runs_per_user: PositiveInt = 8
    token_expiry_warning_s: Annotated[float, Field(ge=0)] = 60.0
    allowed_origins: str | None = None
    # Host header values served (comma-separated, "*" any); unset: see chatgate.transport.origins.
    allowed_hosts: str | None = None

    # Transport limits (docs/protocol.md section 6, v1.1).
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16384
    handshake_timeout_s: PositiveFloat = 5.0
    max_connections: PositiveInt = 10_000

    # Agent.
    agent: str = "demo"
    demo_delay_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    # The most recent messages of a thread an agent gets as its history.
    history_messages: Annotated[int, Field(ge=0, le=10_000)] = 100
    # The openai agent (docs/protocol.md section 7); the two aliases are the names
    # the openai package and every OpenAI-compatible tool already read.
    openai_model: str | None = None
    openai_system_prompt: str | None = None
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    # The longest wait for the model server to connect or to send the next piece of an answer.
    openai_timeout_s: PositiveFloat = 60.0

    # Server.
    ws_compression: bool = False
    # The chat page at "/": None follows the tier (on in development and test only).
    chat_page: bool | None = None
    admin_token: SecretStr | None = None
    # Closed connections whose record /diagnostics/connections/{id} still serves.
    connection_records: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    database_url: str = "sqlite:///./chatgate.db"
    broker_url: str = "memory://"
    log_level: str = "INFO"
    log_format: str = "auto"
    drain_timeout_s: PositiveFloat = 8.0
    store_batch_ms: Annotated[float, Field(ge=0)] = 0.0
    store_batch_max: PositiveInt = 256
    # NORMAL survives a process crash; FULL also a power cut, at an fsync per commit.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # memory:// keeps this many threads, forgetting the one touched longest ago,
    # and this many events and messages, dropping the oldest of the threads
    # touched longest ago first.
    memory_threads: PositiveInt = 10_000
    memory_events: PositiveInt = 250_000
    memory_messages: PositiveInt = 50_000
    # Empty: "<hostname>:<port>", the same when this instance restarts (chatgate.chat.recovery).
    instance_id: Annotated[str, Field(max_length=255)] = ""
    instance_heartbeat_s: PositiveFloat = 5.0
    presence_ttl_s: PositiveFloat = 30.0
    broker_key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "chatgate"
    broker_timeout_s: PositiveFloat = 2.0
    # How long boot waits for an unavailable store or broker before exiting 3 (0: no wait).
    startup_timeout_s: Annotated[float, Field(ge=0, le=3600)] = 30.0

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: str) -> str:
        algorithms = _csv(value)
        if not algorithms:
            raise ValueError("must name at least one algorithm")
        unknown = [a for a in algorithms if a not in HS_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported algorithm {unknown[0]!r} (none is never allowed)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"auto", "json", "console"}:
            raise ValueError("must be auto, json or console")
        return value

    @field_validator("openai_model", "openai_system_prompt", "openai_base_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        # An exported but empty variable (VAR= in a .env file) means "not set".
        return value if value is None or value.strip() else None

    @field_validator("openai_base_url")
    @classmethod
    def _http_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as http://localhost:11434/v1")
        return value

    @field_validator("admin_token")
    @classmethod
    def _blank_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty admin token would open /diagnostics to "Authorization: Bearer ".
        return value if value is None or value.get_secret_value().strip() else None

    @field_validator("openai_api_key")
    @classmethod
    def _blank_key_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is None or value.get_secret_value().strip() else None

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The pinned JWT algorithms."""
        return _csv(self.jwt_algorithms)

    @property
    def origins(self) -> tuple[str, ...] | None:
        """The allowed origins, or None for the default (same host as the request)."""
        return _csv(self.allowed_origins) if self.allowed_origins else None

    @functools.cached_property
    def tier_decision(self) -> TierDecision:
        """The deployment tier; computed once, by the one tier detector."""
        return detect_tier(
            self.environment,
            self.google_cloud_project,
            self.k_service,
            listen_host=self.bind_host,
            kubernetes_service_host=self.kubernetes_service_host,
        )

    @property
    def bind_host(self) -> str:
        """Loopback by default; every interface on Cloud Run, which routes to the container."""
        if self.host:
            return self.host
        return "0.0.0.0" if self.k_service else "127.0.0.1"  # noqa: S104


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return _PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and ``overrides``, by field name) into validated settings.

    Raises:
        ConfigError: a variable is malformed or the combination cannot work.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = env_name(field) if field in Settings.model_fields else field
        if variable == env_name("port") and "port" not in overrides and _only_platform_port():
            variable = "PORT"
        raise ConfigError(variable, error["msg"]) from None
    _check_keys(settings)
    return settings


def _only_platform_port() -> bool:
    """Whether the port came from the platform's ``PORT`` (Cloud Run) rather than ours."""
    environ = {name.upper() for name in os.environ}
    return "PORT" in environ and _PREFIX + "PORT" not in environ


def _check_keys(settings: Settings) -> None:
    """Refuse key configurations that could never verify a token."""
    # The tier detector raises for an unknown ENVIRONMENT; ask it now, at boot.
    _ = settings.tier_decision
    hs = [a for a in settings.algorithms if a in HS_ALGORITHMS]
    asymmetric = [a for a in settings.algorithms if a in ASYMMETRIC_ALGORITHMS]
    if asymmetric and not (settings.jwt_public_key or settings.jwks_url):
        raise ConfigError(
            "CHATGATE_JWT_PUBLIC_KEY",
            f"{asymmetric[0]} is allowed but neither a public key nor CHATGATE_JWKS_URL is set",
        )
    if settings.jwt_secret is not None and not hs:
        raise ConfigError("CHATGATE_JWT_ALGORITHMS", "a JWT secret is set but no HS* algorithm")
    for variable, secret in (
        ("CHATGATE_JWT_SECRET", settings.jwt_secret),
        ("E2E_OAUTH_SIMULATION_KEY", settings.e2e_oauth_simulation_key),
    ):
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_HMAC_KEY_BYTES:
            raise ConfigError(
                variable, f"too short: HS256 needs at least {MIN_HMAC_KEY_BYTES} bytes"
            )
    e2e_key, jwt_secret = settings.e2e_oauth_simulation_key, settings.jwt_secret
    if e2e_key is not None and jwt_secret is not None and _same_secret(e2e_key, jwt_secret):
        raise ConfigError(
            "E2E_OAUTH_SIMULATION_KEY",
            "equals CHATGATE_JWT_SECRET: a test key must never mint real users",
        )
    if settings.jwks_url and not settings.jwks_url.startswith(("https://", "http://")):
        raise ConfigError("CHATGATE_JWKS_URL", "must be an http(s) URL")


def _same_secret(one: SecretStr, other: SecretStr) -> bool:
    return hmac.compare_digest(one.get_secret_value().encode(), other.get_secret_value().encode())
