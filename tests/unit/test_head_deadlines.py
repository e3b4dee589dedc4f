"""One timer per event loop times every request head, each to its own deadline."""

from __future__ import annotations

import asyncio

from chatgate.transport.head_deadlines import HeadDeadlines

_TIMEOUT_S = 0.05


class _Head:
    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name = name
        self._log = log

    def head_timed_out(self) -> None:
        self._log.append((self.name, asyncio.get_running_loop().time()))


async def test_each_head_times_out_its_timeout_after_it_started_in_order() -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = HeadDeadlines(loop, _TIMEOUT_S)
    started = {}
    for name in ("a", "b", "c"):
        started[name] = loop.time()
        deadlines.start(_Head(name, log))
        await asyncio.sleep(0.01)
    await asyncio.sleep(_TIMEOUT_S + 0.05)
    assert [name for name, _ in log] == ["a", "b", "c"]
    for name, at in log:
        # Never early (to the loop's millisecond), and not a whole timeout late.
        assert at >= started[name] + _TIMEOUT_S - 0.002
        assert at < started[name] + 2 * _TIMEOUT_S
    assert len(deadlines) == 0


async def test_a_stopped_head_never_times_out() -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = HeadDeadlines(loop, _TIMEOUT_S)
    done, slow = _Head("done", log), _Head("slow", log)
    deadlines.start(done)
    deadlines.start(slow)
    deadlines.stop(done)
    deadlines.stop(done)
    await asyncio.sleep(_TIMEOUT_S + 0.05)
    assert [name for name, _ in log] == ["slow"]


async def test_starting_again_gives_the_full_timeout_from_then() -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = HeadDeadlines(loop, _TIMEOUT_S)
    first, second = _Head("first", log), _Head("second", log)
    deadlines.start(first)
    deadlines.start(second)
    await asyncio.sleep(_TIMEOUT_S / 2)
    restarted = loop.time()
    deadlines.start(first)
    await asyncio.sleep(_TIMEOUT_S + 0.05)
    assert [name for name, _ in log] == ["second", "first"]
    assert log[1][1] >= restarted + _TIMEOUT_S - 0.002


async def test_heads_started_after_the_queue_emptied_are_still_timed() -> None:
    loop = asyncio.get_running_loop()
    log: list[tuple[str, float]] = []
    deadlines = HeadDeadlines(loop, _TIMEOUT_S)
    early = _Head("early", log)
    deadlines.start(early)
    deadlines.stop(early)
    await asyncio.sleep(_TIMEOUT_S + 0.02)
    deadlines.start(_Head("late", log))
    await asyncio.sleep(_TIMEOUT_S + 0.05)
    assert [name for name, _ in log] == ["late"]
