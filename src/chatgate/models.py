"""Records kept by the store and carried by the broker.

They are values: nothing changes one after it is built. They are slotted but
not frozen dataclasses because a frozen one's ``__init__`` sets each field
through ``object.__setattr__``, four times the cost, and a chat turn builds
about twenty of them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


_ID_BYTES = 12


class _TimeOrderedIds:
    """Identifiers that sort by the millisecond they were made, then by 96 random bits.

    Every table of the SQL stores is keyed or indexed by these ids. Random keys
    put each new row on a random page of each index, so that a commit of a
    hundred turns rewrote hundreds of pages; keys that rise with time land on
    the last page or two. The random part keeps them unguessable; the time
    part tells nothing the owner does not see anyway (``created_at``).

    Random bytes are drawn from the OS in blocks: one system call per 341 ids.
    """

    __slots__ = ("_block", "_offset")

    _BLOCK_BYTES = 4092

    def __init__(self) -> None:
        self._block = b""
        self._offset = 0

    def new_id(self, prefix: str) -> str:
        """An identifier such as ``th_019a5f3c2b1e3f9c...``: 12 hex digits of time, 24 random."""
        start = self._offset
        end = start + _ID_BYTES
        if end > len(self._block):
            self._block, start, end = secrets.token_bytes(self._BLOCK_BYTES), 0, _ID_BYTES
        self._offset = end
        return f"{prefix}_{time.time_ns() // 1_000_000:012x}{self._block[start:end].hex()}"


new_id = _TimeOrderedIds().new_id
"""An identifier such as ``th_019a5f3c2b1e3f9c...``: the millisecond, then 96 random bits.

A bound method rather than a function around one: a turn makes five ids.
"""


@dataclass(slots=True)
class Thread:
    """A conversation owned by one user."""

    id: str
    owner: str
    title: str
    created_at: str
    updated_at: str


@dataclass(slots=True)
class Message:
    """One turn of a thread: the user's text or the agent's final answer."""

    id: str
    thread_id: str
    role: Role
    content: str
    run_id: str | None
    created_at: str


@dataclass(slots=True)
class StoredEvent:
    """An agent event in a thread's log; ``event_id`` is dense and rising per thread."""

    thread_id: str
    event_id: int
    type: str
    run_id: str | None
    payload: dict[str, Any] = field(repr=False)
    ts: str


@dataclass(slots=True)
class Delivery:
    """An event on its way to a user's sockets, encoded once for every socket."""

    thread_id: str
    event_id: int
    frame: bytes = field(repr=False)
    """The UTF-8 JSON text frame, as written to the socket."""


RunStatus = Literal["running", "completed", "cancelled", "failed", "interrupted"]
"""``running`` until the run ends; ``interrupted`` when its process died or stopped first."""


@dataclass(slots=True)
class RunRecord:
    """A run as the store keeps it, so that a run whose process died can be ended later."""

    run_id: str
    thread_id: str
    owner: str
    instance_id: str
    status: RunStatus = "running"
    ended: bool = False
    """Whether the run's log already holds its final ``agent_completed`` or ``agent_error``."""
