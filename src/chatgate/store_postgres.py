"""The PostgreSQL store (``postgresql://user@host:5432/db``), through asyncpg.

For several gateway instances sharing one database. Event ids are allocated
under the thread rows' locks, taken in thread-id order so that two instances
flushing batches that share threads cannot deadlock. Concurrent migrators (say,
a rolling deploy) are serialized by an advisory lock.

URL query parameters ``search_path`` and ``application_name`` become
PostgreSQL settings of every connection; the first schema of ``search_path``
is created when missing, so ``?search_path=chatgate`` keeps the tables apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Float, cast, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from chatgate.errors import ConfigError
from chatgate.store import StoreOptions
from chatgate.store_sql import SQLStore, dump_json, instances, load_json, threads

_DRIVER = "postgresql+asyncpg"
_SERVER_SETTINGS = ("search_path", "application_name")
_CONNECT_TIMEOUT_S = 5.0
_COMMAND_TIMEOUT_S = 30.0
_POOL_TIMEOUT_S = 10.0
# Any fixed 64-bit number works; every chatgate migrator must use the same one.
_MIGRATION_LOCK = 0x63686174676174

_ALLOCATE = text(
    "UPDATE threads AS t SET last_event_id = t.last_event_id + v.n"
    " FROM unnest(CAST(:ids AS text[]), CAST(:ns AS bigint[])) AS v(id, n)"
    " WHERE t.id = v.id RETURNING t.id, t.last_event_id"
)


def postgres_url(url: str) -> tuple[URL, dict[str, str]]:
    """The SQLAlchemy URL for asyncpg, and the server settings taken from its query.

    Raises:
        ConfigError: the URL is malformed or names another driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("CHATGATE_DATABASE_URL", "not a valid postgresql:// URL") from None
    if parsed.drivername not in {"postgres", "postgresql", _DRIVER}:
        raise ConfigError("CHATGATE_DATABASE_URL", f"use postgresql:// (driver {_DRIVER})")
    settings = {}
    for name in _SERVER_SETTINGS:
        value = parsed.query.get(name)
        if isinstance(value, str):
            settings[name] = value
        elif value is not None:
            raise ConfigError("CHATGATE_DATABASE_URL", f"{name} is given more than once")
    return parsed.difference_update_query(_SERVER_SETTINGS).set(drivername=_DRIVER), settings


class PostgresStore(SQLStore):
    """The ``Store`` interface on PostgreSQL."""

    kind = "postgresql"

    def __init__(self, url: str, options: StoreOptions | None = None) -> None:
        engine_url, server_settings = postgres_url(url)
        search_path = server_settings.get("search_path", "")
        self._schema = search_path.split(",")[0].strip().strip('"') or None
        engine = create_async_engine(
            engine_url,
            json_serializer=dump_json,
            json_deserializer=load_json,
            pool_pre_ping=True,
            pool_timeout=_POOL_TIMEOUT_S,
            connect_args={
                "timeout": _CONNECT_TIMEOUT_S,
                "command_timeout": _COMMAND_TIMEOUT_S,
                "server_settings": server_settings,
            },
        )
        super().__init__(engine, options or StoreOptions())

    async def _before_migrations(self, conn: AsyncConnection) -> None:
        # Held until the migration transaction ends: instances starting together
        # migrate one after the other, and the later ones find nothing to do.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        if self._schema is not None:
            quoted = conn.dialect.identifier_preparer.quote(self._schema)
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))

    async def _allocate_event_ids(
        self, conn: AsyncConnection, counts: Mapping[str, int]
    ) -> dict[str, int]:
        ids = sorted(counts)
        if len(ids) > 1:
            # Lock the rows in id order first; one UPDATE over many rows locks
            # them in whatever order its plan visits them.
            await conn.execute(
                select(threads.c.id)
                .where(threads.c.id.in_(ids))
                .order_by(threads.c.id)
                .with_for_update()
            )
        result = await conn.execute(_ALLOCATE, {"ids": ids, "ns": [counts[i] for i in ids]})
        return {str(row.id): int(row.last_event_id) for row in result}

    def _database_epoch(self) -> ColumnElement[float]:
        return cast(func.extract("epoch", func.clock_timestamp()), Float)

    async def _upsert_heartbeat(self, conn: AsyncConnection, instance_id: str) -> None:
        now = self._database_epoch()
        statement = insert(instances).values(instance_id=instance_id, heartbeat_at=now)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[instances.c.instance_id], set_={"heartbeat_at": now}
            )
        )
