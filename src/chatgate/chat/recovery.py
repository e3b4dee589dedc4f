"""Ending runs whose process died, so that a client that resumes sees them end.

Every instance has an id (``CHATGATE_INSTANCE_ID``, by default
``<hostname>:<port>``, the same across a restart of one instance) and keeps a
heartbeat in the store. A run is orphaned when its instance starts again (the
process running it died) or when its instance's heartbeat is older than three
heartbeat intervals (the instance is gone for good). Each orphaned run is
claimed by exactly one instance, which appends the run's final ``agent_error``
``run_interrupted`` through the normal path: numbered after the stored events,
then published.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

from chatgate.chat.runs import RunManager
from chatgate.errors import StoreUnavailable
from chatgate.logs import get_logger
from chatgate.models import RunRecord
from chatgate.settings import Settings
from chatgate.store.base import Store

log = get_logger("chatgate.chat.recovery")

STALE_HEARTBEATS = 3
"""How many heartbeat intervals an instance may miss before its runs are ended."""


def instance_id_for(settings: Settings) -> str:
    """This process's instance id: ``CHATGATE_INSTANCE_ID``, else ``<hostname>:<port>``.

    On Cloud Run every instance listens on the same port and the host name is
    not documented to differ, and two live instances sharing an id would end
    each other's runs: there the default gets a random part. A restarted Cloud
    Run container is a new instance anyway; the others' sweep ends its old runs.
    """
    if settings.instance_id:
        return settings.instance_id
    base = f"{socket.gethostname()}:{settings.port}"
    if settings.k_service:
        return f"{base}:{secrets.token_hex(4)}"
    return base


class Recovery:
    """Registers this instance, ends orphaned runs at startup, then keeps watch."""

    def __init__(
        self, store: Store, runs: RunManager, *, instance_id: str, heartbeat_s: float
    ) -> None:
        self.instance_id = instance_id
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = STALE_HEARTBEATS * heartbeat_s
        self._store = store
        self._runs = runs
        self._task: asyncio.Task[None] | None = None
        self._healthy_since: float | None = None

    async def start(self) -> None:
        """Record the heartbeat, end this instance's runs left from before, start watching.

        Raises:
            StoreUnavailable: the store does not answer (the process cannot start).
        """
        self._runs.instance_id = self.instance_id
        await self._store.heartbeat(self.instance_id)
        self._healthy_since = asyncio.get_running_loop().time()
        await self._end(await self._store.claim_orphaned_runs(self.instance_id, None))
        self._task = asyncio.create_task(self._watch(), name="recovery")

    async def stop(self) -> None:
        """Stop the heartbeat."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> int:
        """Beat once, then end the runs of instances whose heartbeat is stale.

        Other instances are judged only after this one's own heartbeats have
        succeeded for a whole stale interval: after an outage of the store every
        heartbeat is old, and the first instance back must not end the live
        runs of the others before they had a chance to beat.

        Returns:
            How many runs were ended.

        Raises:
            StoreUnavailable: the store does not answer.
        """
        loop = asyncio.get_running_loop()
        try:
            await self._store.heartbeat(self.instance_id)
        except StoreUnavailable:
            self._healthy_since = None
            raise
        if self._healthy_since is None:
            self._healthy_since = loop.time()
        if loop.time() - self._healthy_since < self.stale_after_s:
            return 0
        claimed = await self._store.claim_orphaned_runs(None, self.stale_after_s)
        await self._end(claimed)
        return len(claimed)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.sweep()
            except StoreUnavailable:
                log.warning("heartbeat failed: store unavailable", instance_id=self.instance_id)

    async def _end(self, claimed: list[RunRecord]) -> None:
        for record in claimed:
            await self._runs.end_orphan(record)
