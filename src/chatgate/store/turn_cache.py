"""Each thread's latest turns, kept between runs: a turn reads only the messages added since.

A run's agent gets its thread's latest messages (``Store.recent_turns``). Read
whole on every turn, a long thread costs a hundred rows, each on a page of its
own once threads interleave in the file. But messages are never changed nor
deleted, and SQLite hands out ``messages.seq`` in commit order (one writer at
a time, whichever process it is), so the rows with a ``seq`` above the newest
one cached are exactly the messages added since: the cache asks the database
for those alone, and stays right when another process writes to the file.

The cache is bounded by threads and by the characters it holds; the threads
used longest ago go first. A pure data structure: the store runs the queries.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from chatgate.models import Role

Row = tuple[int, Role, str]
"""A message as the queries give it: ``seq``, role and text."""


@dataclass(slots=True)
class _Tail:
    last_seq: int
    turns: deque[tuple[Role, str]]
    """The thread's latest messages; all of them while fewer than its ``maxlen``."""
    chars: int


class TurnCache:
    """Threads' latest turns, by thread id."""

    def __init__(self, *, max_threads: int = 4096, max_chars: int = 16 * 2**20) -> None:
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._max_threads = max_threads
        self._max_chars = max_chars
        self._chars = 0

    @property
    def chars(self) -> int:
        """Characters of message text held, across threads."""
        return self._chars

    def __len__(self) -> int:
        return len(self._tails)

    def after(self, thread_id: str, limit: int) -> int | None:
        """The ``seq`` past which to read the thread's messages; None to read its latest whole."""
        tail = self._tails.get(thread_id)
        if tail is None or limit > (tail.turns.maxlen or 0):
            return None
        self._tails.move_to_end(thread_id)
        return tail.last_seq

    def read_whole(
        self, thread_id: str, limit: int, newest_first: Sequence[Row]
    ) -> list[tuple[Role, str]]:
        """Keep the thread's latest ``limit`` messages (newest first, as read); return them."""
        self._drop(thread_id)
        tail = _Tail(0, deque(maxlen=max(limit, 1)), chars=0)
        self._tails[thread_id] = tail
        self._append(tail, newest_first)
        self._evict()
        return list(tail.turns)

    def read_newer(
        self, thread_id: str, limit: int, newest_first: Sequence[Row]
    ) -> list[tuple[Role, str]]:
        """Add the messages read past :meth:`after`; return the thread's latest ``limit``.

        ``newest_first`` holds at most ``limit`` rows, newest first, as read.
        """
        tail = self._tails[thread_id]
        if len(newest_first) >= limit:
            # As many new ones as asked for: the older ones are no longer needed.
            return self.read_whole(thread_id, limit, newest_first)
        self._append(tail, newest_first)
        self._evict()
        turns = tail.turns
        if len(turns) <= limit:
            return list(turns)
        return list(turns)[-limit:]

    def _append(self, tail: _Tail, newest_first: Sequence[Row]) -> None:
        turns = tail.turns
        before = tail.chars
        for seq, role, content in reversed(newest_first):
            if len(turns) == turns.maxlen:
                tail.chars -= len(turns[0][1])
            turns.append((role, content))
            tail.chars += len(content)
            tail.last_seq = max(tail.last_seq, seq)
        self._chars += tail.chars - before

    def _drop(self, thread_id: str) -> None:
        dropped = self._tails.pop(thread_id, None)
        if dropped is not None:
            self._chars -= dropped.chars

    def _evict(self) -> None:
        while self._tails and (
            len(self._tails) > self._max_threads or self._chars > self._max_chars
        ):
            _, oldest = self._tails.popitem(last=False)
            self._chars -= oldest.chars
