"""The turn cache gives exactly what reading the latest messages whole gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.models import Role
from chatgate.store.turn_cache import Row, TurnCache

THREADS = ("a", "b", "c")


class Log:
    """The messages table, as the queries see it: ``seq`` grows in commit order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {thread: [] for thread in THREADS}
        self.seq = 0

    def add(self, thread: str, role: Role, content: str) -> None:
        self.seq += 1
        self.rows[thread].append((self.seq, role, content))

    def since(self, thread: str, after: int, limit: int) -> list[Row]:
        newer = [row for row in self.rows[thread] if row[0] > after]
        return list(reversed(newer))[:limit]

    def latest(self, thread: str, limit: int) -> list[tuple[Role, str]]:
        return [(role, content) for _, role, content in self.rows[thread][-limit:]]


def recent(cache: TurnCache, log: Log, thread: str, limit: int) -> list[tuple[Role, str]]:
    """What ``SQLiteStore.recent_turns`` does with its cache."""
    after = cache.after(thread, limit)
    rows = log.since(thread, after or 0, limit)
    if after is None:
        return cache.read_whole(thread, limit, rows)
    return cache.read_newer(thread, limit, rows)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from(THREADS),
            st.sampled_from(["user", "assistant"]),
            st.text(max_size=6),
        ),
        st.tuples(st.just("read"), st.sampled_from(THREADS), st.integers(1, 7), st.just("")),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(operations, st.integers(1, 3), st.sampled_from([0, 12, 10_000]))
def test_every_read_equals_the_latest_messages_read_whole(
    ops: list[tuple[str, str, object, str]], max_threads: int, max_chars: int
) -> None:
    log = Log()
    cache = TurnCache(max_threads=max_threads, max_chars=max_chars)
    for kind, thread, arg, content in ops:
        if kind == "add":
            log.add(thread, arg, content)  # type: ignore[arg-type]
        else:
            limit = int(arg)  # type: ignore[call-overload]
            assert recent(cache, log, thread, limit) == log.latest(thread, limit)
        assert len(cache) <= max_threads
        assert cache.chars <= max(max_chars, 0) or len(cache) == 0


def test_a_read_after_new_messages_asks_only_for_them() -> None:
    log = Log()
    cache = TurnCache()
    for index in range(50):
        log.add("a", "user", f"m{index}")
    assert recent(cache, log, "a", 20)[-1] == ("user", "m49")
    log.add("a", "assistant", "new")
    after = cache.after("a", 20)
    assert after == 50
    assert log.since("a", after, 20) == [(51, "assistant", "new")]
    assert recent(cache, log, "a", 20) == log.latest("a", 20)


def test_a_larger_limit_than_cached_reads_whole_again() -> None:
    log = Log()
    cache = TurnCache()
    for index in range(30):
        log.add("a", "user", f"m{index}")
    recent(cache, log, "a", 5)
    assert cache.after("a", 10) is None
    assert recent(cache, log, "a", 10) == log.latest("a", 10)


def test_the_threads_used_longest_ago_go_first() -> None:
    log = Log()
    cache = TurnCache(max_threads=2)
    for thread in THREADS:
        log.add(thread, "user", thread)
        recent(cache, log, thread, 3)
    assert cache.after("a", 3) is None
    assert cache.after("c", 3) == 3


def test_a_short_thread_read_whole_then_grown_past_the_cached_limit_reads_whole_again() -> None:
    log = Log()
    cache = TurnCache()
    for index in range(2):
        log.add("a", "user", f"m{index}")
    assert recent(cache, log, "a", 3) == log.latest("a", 3)
    for index in range(2, 4):
        log.add("a", "user", f"m{index}")
    assert recent(cache, log, "a", 5) == log.latest("a", 5)
