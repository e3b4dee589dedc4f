"""Choosing a store by URL scheme, and refusing URLs that cannot work, at boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.errors import ConfigError
from chatgate.settings import load_settings
from chatgate.store.base import StoreOptions, open_store
from chatgate.store.postgres import postgres_url


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", "memory"),
        ("sqlite:///./chatgate.db", "sqlite"),
        ("sqlite+aiosqlite:///./chatgate.db", "sqlite"),
        ("postgresql://u:pw@db.example:5432/chat", "postgresql"),
        ("postgres://u@db.example/chat", "postgresql"),
        ("postgresql+asyncpg://u@db.example/chat", "postgresql"),
    ],
)
def test_the_scheme_picks_the_backend(url: str, kind: str) -> None:
    assert open_store(url).kind == kind


def test_the_default_is_a_sqlite_file() -> None:
    assert load_settings().database_url == "sqlite:///./chatgate.db"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@db/chat",
        "redis://127.0.0.1:6379",
        "chatgate.db",
        "sqlite:///:memory:",
        "sqlite://",
        "postgresql+psycopg://u@db/chat",
    ],
)
def test_unusable_urls_are_boot_errors_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert caught.value.variable == "CHATGATE_DATABASE_URL"


def test_a_sqlite_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'chat.db'}")


def test_a_password_never_reaches_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        open_store("postgresql+psycopg://user:s3cret-pw@db/chat")
    assert "s3cret-pw" not in str(caught.value)


def test_search_path_and_application_name_become_server_settings() -> None:
    url, settings = postgres_url(
        "postgres://u@db:5433/chat?search_path=tenant_a&application_name=gw&ssl=require"
    )
    assert settings == {"search_path": "tenant_a", "application_name": "gw"}
    assert url.drivername == "postgresql+asyncpg"
    assert url.port == 5433
    assert dict(url.query) == {"ssl": "require"}


def test_options_come_from_the_batching_settings() -> None:
    settings = load_settings(store_batch_ms=2.5, store_batch_max=64)
    assert StoreOptions.from_settings(settings) == StoreOptions(batch_ms=2.5, batch_max=64)
