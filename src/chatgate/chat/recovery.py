"""Ending runs whose process died, and never the runs of a process that lives.

Every process has an identity of its own, ``<base>/<random>``, where the base
is ``CHATGATE_INSTANCE_ID`` or ``<hostname>:<port>``, and holds a lease in the
store: its row in ``instances``, renewed by a heartbeat every
``CHATGATE_INSTANCE_HEARTBEAT_S``. Runs are recorded under the identity. A
run is orphaned when its process is gone, which a process can know in two ways
(docs/storage.md, "Runs that outlive their process"):

- at once, at startup, when it can prove the process gone: it ran on this host
  (same host name, boot and PID namespace) and its pid is no longer a live
  process (or is this process's pid); or it ran under the same configured
  ``CHATGATE_INSTANCE_ID``, which names one process at a time;
- when the process's lease expires: no heartbeat for three intervals.

Each orphaned run is claimed by exactly one process, which appends the run's
final ``agent_error`` ``run_interrupted`` through the normal path: numbered
after the stored events, then published.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

from chatgate.chat.runs import RunManager
from chatgate.errors import StoreUnavailable
from chatgate.logs import get_logger
from chatgate.models import RunRecord
from chatgate.settings import Settings
from chatgate.store.base import InstanceLease, Store

log = get_logger("chatgate.chat.recovery")

STALE_HEARTBEATS = 3
"""How many heartbeat intervals an instance may miss before its runs are ended."""

# The identity must fit the store's 255 characters with its random part.
_BASE_CHARS = 240
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PID_NAMESPACE = Path("/proc/self/ns/pid")

PidAlive = Callable[[int], bool]


def process_namespace() -> str:
    """Where a pid names one process: the host name, the boot and the PID namespace.

    Two containers may share a host name (and a restarted one keeps it), but
    not a boot and a PID namespace; where ``/proc`` is missing the host name
    is all there is.
    """
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(_BOOT_ID.read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(_PID_NAMESPACE.readlink()))
    return " ".join(parts)[:255]


def identity_for(settings: Settings) -> InstanceLease:
    """This process's identity: its base, a random part, and where it runs."""
    configured = bool(settings.instance_id)
    base = settings.instance_id or f"{socket.gethostname()}:{settings.port}"
    instance_id = f"{base[:_BASE_CHARS]}/{secrets.token_hex(4)}"
    return InstanceLease(instance_id, base, configured, process_namespace(), os.getpid())


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process here (one we may not signal counts as live)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proven_gone(other: InstanceLease, me: InstanceLease, alive: PidAlive) -> str | None:
    """Why the process ``other`` certainly runs no more, or None when that is not certain.

    A process on this host whose pid is alive is never judged gone, whatever
    its id: that is the process a second ``chatgate serve`` must leave alone.
    """
    if other.instance_id == me.instance_id:
        return None
    if other.host is not None and other.host == me.host and other.pid is not None:
        if other.pid == me.pid:
            return f"its pid {other.pid} is this process's now"
        if not alive(other.pid):
            return f"no process {other.pid} runs on this host"
        return None
    if other.configured and me.configured and other.base == me.base:
        return "it had this CHATGATE_INSTANCE_ID, which names one process at a time"
    return None


class Recovery:
    """Holds this process's lease, ends the runs of proven dead processes, then keeps watch."""

    def __init__(
        self,
        store: Store,
        runs: RunManager,
        *,
        identity: InstanceLease,
        heartbeat_s: float,
        alive: PidAlive = pid_alive,
    ) -> None:
        self.identity = identity
        self.instance_id = identity.instance_id
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = STALE_HEARTBEATS * heartbeat_s
        self._store = store
        self._runs = runs
        self._alive = alive
        self._task: asyncio.Task[None] | None = None
        self._healthy_since: float | None = None

    async def start(self) -> None:
        """Take the lease, end the runs of processes proven gone, start watching.

        Raises:
            StoreUnavailable: the store does not answer (the process cannot start).
        """
        self._runs.instance_id = self.instance_id
        await self._store.register_instance(self.identity)
        self._healthy_since = asyncio.get_running_loop().time()
        dead = self._gone(await self._store.list_instances())
        await self._end(await self._store.claim_orphaned_runs(dead, None))
        self._task = asyncio.create_task(self._watch(), name="recovery")

    async def stop(self) -> None:
        """Stop the heartbeat and give the lease back (this process's runs have ended)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._store.release_instance(self.instance_id)
        except StoreUnavailable:
            # The lease then expires by itself; runs left running end with it.
            log.warning("lease not released: store unavailable", instance_id=self.instance_id)

    async def sweep(self) -> int:
        """Renew the lease once, then end the runs of processes whose lease expired.

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
        claimed = await self._store.claim_orphaned_runs((), self.stale_after_s)
        await self._end(claimed)
        return len(claimed)

    def _gone(self, leases: list[InstanceLease]) -> list[str]:
        dead = []
        for lease in leases:
            reason = proven_gone(lease, self.identity, self._alive)
            if reason is not None:
                log.info(
                    "ending the runs of a stopped process",
                    instance_id=lease.instance_id,
                    why=reason,
                )
                dead.append(lease.instance_id)
            elif (
                lease.configured
                and lease.base == self.identity.base
                and lease.instance_id != self.instance_id
            ):
                log.warning(
                    "another live process has this CHATGATE_INSTANCE_ID; give each its own",
                    instance_id=lease.instance_id,
                )
        return dead

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
