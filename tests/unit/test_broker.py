"""Choosing a broker by URL scheme, its options, and the in-process broker's rules."""

from __future__ import annotations

import pytest

from chatgate.broker.base import BrokerOptions, open_broker
from chatgate.broker.memory import MemoryBroker
from chatgate.broker.redis import RedisBroker
from chatgate.errors import ConfigError
from chatgate.models import Delivery
from chatgate.settings import load_settings


def test_memory_is_the_default_backend() -> None:
    assert isinstance(open_broker(load_settings().broker_url), MemoryBroker)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache:6380/1"])
def test_redis_schemes_select_the_redis_broker(url: str) -> None:
    broker = open_broker(url, BrokerOptions(key_prefix="p", presence_ttl_s=3.0, timeout_s=0.5))
    assert isinstance(broker, RedisBroker)
    assert broker.options == BrokerOptions(key_prefix="p", presence_ttl_s=3.0, timeout_s=0.5)


def test_an_unknown_scheme_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        open_broker("nats://127.0.0.1:4222")
    assert caught.value.variable == "CHATGATE_BROKER_URL"
    assert "'nats'" in caught.value.problem


def test_options_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_PRESENCE_TTL_S", "12")
    monkeypatch.setenv("CHATGATE_BROKER_KEY_PREFIX", "staging")
    monkeypatch.setenv("CHATGATE_BROKER_TIMEOUT_S", "0.75")
    options = BrokerOptions.from_settings(load_settings())
    assert options == BrokerOptions(presence_ttl_s=12.0, key_prefix="staging", timeout_s=0.75)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CHATGATE_BROKER_TIMEOUT_S", "0"), ("CHATGATE_BROKER_KEY_PREFIX", "")],
)
def test_bad_broker_settings_stop_the_boot(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable


async def test_a_failing_sink_does_not_stop_the_others() -> None:
    broker = MemoryBroker()
    got: list[Delivery] = []

    def broken(_: Delivery) -> None:
        raise RuntimeError("boom")

    await broker.subscribe("alice", broken)
    await broker.subscribe("alice", got.append)
    delivery = Delivery("th_1", 1, b"{}")
    await broker.publish("alice", delivery)
    assert got == [delivery]
