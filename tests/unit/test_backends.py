"""Backends are chosen by URL scheme; a driver that is not installed names its extra."""

from __future__ import annotations

import sys

import pytest

from chatgate.broker.base import open_broker
from chatgate.errors import ConfigError
from chatgate.store.base import open_store


def _hide(monkeypatch: pytest.MonkeyPatch, driver: str, *modules: str) -> None:
    # A None entry in sys.modules makes `import driver` raise ImportError, as
    # on an install without the extra.
    monkeypatch.setitem(sys.modules, driver, None)
    for module in modules:
        monkeypatch.delitem(sys.modules, module, raising=False)


def test_postgres_without_its_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "asyncpg", "chatgate.store.postgres")
    with pytest.raises(ConfigError) as error:
        open_store("postgresql://u@127.0.0.1:5432/db")
    assert error.value.variable == "CHATGATE_DATABASE_URL"
    assert "pip install 'chatgate[postgres]'" in error.value.problem


def test_redis_without_its_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(
        monkeypatch,
        "redis",
        "chatgate.broker.redis",
        "chatgate.broker.redis_presence",
        "redis.asyncio",
    )
    with pytest.raises(ConfigError) as error:
        open_broker("redis://127.0.0.1:6379/0")
    assert error.value.variable == "CHATGATE_BROKER_URL"
    assert "pip install 'chatgate[redis]'" in error.value.problem


@pytest.mark.parametrize(
    ("opener", "url", "variable"),
    [
        (open_store, "mysql://x/y", "CHATGATE_DATABASE_URL"),
        (open_broker, "nats://x", "CHATGATE_BROKER_URL"),
    ],
)
def test_an_unknown_scheme_is_refused_naming_the_variable(opener, url, variable) -> None:
    with pytest.raises(ConfigError) as error:
        opener(url)
    assert error.value.variable == variable
    assert "unknown scheme" in error.value.problem


def test_the_embedded_defaults_need_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "asyncpg", "chatgate.store.postgres")
    _hide(monkeypatch, "redis", "chatgate.broker.redis", "chatgate.broker.redis_presence")
    assert open_store("sqlite:///./chatgate-test.db").kind == "sqlite"
    assert open_broker("memory://").kind == "memory"
