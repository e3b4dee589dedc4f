"""Settings: read once, validated, bad values named, secrets hidden."""

from __future__ import annotations

import pytest

from chatgate.errors import ConfigError
from chatgate.settings import MIN_HMAC_KEY_BYTES, env_name, load_settings

SECRET = "s" * 40
E2E_KEY = "e" * 40
PEM = "-----BEGIN PUBLIC KEY-----\nnot-a-real-key-but-set\n-----END PUBLIC KEY-----\n"


def config_error(**overrides: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return caught.value


def test_defaults() -> None:
    settings = load_settings()
    assert settings.port == 8000
    assert settings.algorithms == ("HS256",)
    assert settings.max_message_bytes == 65536
    assert settings.rate_limit_messages == 20
    assert settings.rate_limit_window_s == 10.0
    assert settings.max_connections_per_user == 10
    assert settings.heartbeat_interval_s == 20.0
    assert settings.heartbeat_timeout_s == 20.0
    assert settings.send_queue_bytes == 1024 * 1024
    assert settings.auth_timeout_s == 5.0
    assert settings.agent == "demo"
    assert settings.e2e_testing is False
    assert settings.bind_host == "127.0.0.1"


@pytest.mark.parametrize("value", ["abc", "-1", "65536", "80.5", ""])
def test_bad_chatgate_port_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CHATGATE_PORT", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "CHATGATE_PORT"
    assert str(caught.value).startswith("CHATGATE_PORT: ")


def test_bad_port_override_names_the_variable() -> None:
    assert config_error(port=70000).variable == "CHATGATE_PORT"


def test_bad_platform_port_names_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only PORT is set, so the message must send the operator to PORT.
    monkeypatch.setenv("PORT", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "PORT"


def test_port_used_when_chatgate_port_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    assert load_settings().port == 9123


def test_chatgate_port_wins_over_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("CHATGATE_PORT", "9456")
    assert load_settings().port == 9456


@pytest.mark.parametrize("algorithms", ["none", "HS256,none", "NONE", "HS1", "", " , "])
def test_unknown_algorithm_names_the_variable(algorithms: str) -> None:
    error = config_error(jwt_algorithms=algorithms)
    assert error.variable == "CHATGATE_JWT_ALGORITHMS"


def test_unknown_algorithm_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_JWT_ALGORITHMS", "none")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "CHATGATE_JWT_ALGORITHMS"
    assert "none" in caught.value.problem


def test_algorithm_list() -> None:
    settings = load_settings(jwt_algorithms=" HS256 , RS256 ", jwt_public_key=PEM)
    assert settings.algorithms == ("HS256", "RS256")


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("jwt_secret", "CHATGATE_JWT_SECRET"),
        ("e2e_oauth_simulation_key", "E2E_OAUTH_SIMULATION_KEY"),
    ],
)
def test_short_hmac_keys_are_refused(field: str, variable: str) -> None:
    short = "k" * (MIN_HMAC_KEY_BYTES - 1)
    error = config_error(**{field: short})
    assert error.variable == variable
    assert short not in str(error)
    assert load_settings(**{field: "k" * MIN_HMAC_KEY_BYTES}) is not None


def test_short_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_JWT_SECRET", "too-short-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "CHATGATE_JWT_SECRET"
    assert "too-short-secret" not in str(caught.value)


def test_key_length_counts_bytes() -> None:
    # 16 two-byte characters are 32 bytes: long enough.
    assert load_settings(jwt_secret="é" * 16).jwt_secret is not None


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA", "HS256,PS256"])
def test_asymmetric_algorithm_without_a_public_key(algorithm: str) -> None:
    assert config_error(jwt_algorithms=algorithm).variable == "CHATGATE_JWT_PUBLIC_KEY"


def test_asymmetric_algorithm_with_a_jwks_url() -> None:
    settings = load_settings(jwt_algorithms="RS256", jwks_url="https://idp.example/jwks")
    assert settings.jwks_url == "https://idp.example/jwks"


def test_jwks_url_must_be_http() -> None:
    error = config_error(jwt_algorithms="RS256", jwks_url="file:///etc/keys")
    assert error.variable == "CHATGATE_JWKS_URL"


def test_secret_without_an_hs_algorithm() -> None:
    error = config_error(jwt_secret=SECRET, jwt_algorithms="RS256", jwt_public_key=PEM)
    assert error.variable == "CHATGATE_JWT_ALGORITHMS"


def test_unknown_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "qa")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "ENVIRONMENT"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CHATGATE_MAX_MESSAGE_BYTES", "0"),
        ("CHATGATE_RATE_LIMIT_WINDOW_S", "-1"),
        ("CHATGATE_LOG_LEVEL", "TRACE"),
        ("CHATGATE_LOG_FORMAT", "xml"),
        ("E2E_TESTING", "maybe"),
        ("DISABLE_ENHANCED_E2E_DETECTION", "perhaps"),
    ],
)
def test_other_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("0", False), ("false", False)],
)
def test_boolean_flags(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("E2E_TESTING", value)
    monkeypatch.setenv("DISABLE_ENHANCED_E2E_DETECTION", value)
    settings = load_settings()
    assert settings.e2e_testing is expected
    assert settings.disable_enhanced_e2e_detection is expected


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = "admin-token-visible-nowhere"
    monkeypatch.setenv("CHATGATE_JWT_SECRET", SECRET)
    monkeypatch.setenv("E2E_OAUTH_SIMULATION_KEY", E2E_KEY)
    monkeypatch.setenv("CHATGATE_ADMIN_TOKEN", admin)
    settings = load_settings(jwt_algorithms="HS256,RS256", jwt_public_key=PEM)
    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        for secret in (SECRET, E2E_KEY, admin, "not-a-real-key-but-set"):
            assert secret not in text
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("port", "CHATGATE_PORT"),
        ("environment", "ENVIRONMENT"),
        ("e2e_testing", "E2E_TESTING"),
        ("jwt_secret", "CHATGATE_JWT_SECRET"),
        ("rate_limit_messages", "CHATGATE_RATE_LIMIT_MESSAGES"),
    ],
)
def test_env_name(field: str, variable: str) -> None:
    assert env_name(field) == variable


def test_bind_host_on_cloud_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_SERVICE", "chat-staging")
    assert load_settings().bind_host == "0.0.0.0"  # noqa: S104 - Cloud Run routes to every interface
    assert load_settings(host="127.0.0.2").bind_host == "127.0.0.2"
