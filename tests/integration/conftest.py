"""Fixtures of the store contract suites: one store per backend, and more on the same database.

PostgreSQL is the real server at 127.0.0.1:5432 (database ``test``), each test
in a schema of its own; SQLite a file per test. Two store objects on one
database are two gateway instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.store.base import Store, StoreOptions, open_store

from databases import database_url


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as found:
        yield found


@pytest.fixture
async def opened(url: str) -> AsyncIterator[list[Store]]:
    """Stores opened by a test through ``connect``; closed afterwards."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
async def connect(url: str, opened: list[Store]):
    """Open (and start) another store on the same database: another instance.

    The in-process store has no database to share: every "instance" is the same object.
    """

    async def instance(**options) -> Store:
        if url == "memory://" and opened:
            return opened[0]
        store = open_store(url, StoreOptions(**options))
        opened.append(store)
        await store.start()
        return store

    return instance


@pytest.fixture
async def store(connect) -> Store:
    return await connect()
