"""The PostgreSQL store's asyncpg connections take what the URL says, as SQLAlchemy's did."""

from __future__ import annotations

from chatgate.store.postgres import PostgresStore


def test_the_asyncpg_connections_take_the_url_and_its_settings() -> None:
    store = PostgresStore(
        "postgres://u:pw@db:5433/chat?search_path=tenant_a&application_name=gw&ssl=require"
    )
    args = dict(store._raw._connect)
    assert args == {
        "host": "db",
        "port": 5433,
        "user": "u",
        "password": "pw",
        "database": "chat",
        "ssl": "require",
        "statement_cache_size": 100,
        "timeout": 5.0,
        "command_timeout": 30.0,
        "server_settings": {"search_path": "tenant_a", "application_name": "gw"},
    }
    assert store.where == "db:5433/chat"


def test_a_url_for_a_transaction_pooler_turns_the_statement_cache_off() -> None:
    # PgBouncer in transaction mode lends another server connection to each
    # transaction: named prepared statements would not be there.
    store = PostgresStore("postgres://u@db/chat?prepared_statement_cache_size=0")
    args = dict(store._raw._connect)
    assert args["statement_cache_size"] == 0
    assert "prepared_statement_cache_size" not in args
