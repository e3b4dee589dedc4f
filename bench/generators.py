"""The harness's side of the load-generator processes (see :mod:`bench.loadgen`)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Self

from bench.loadgen import worker_main

_JOIN_TIMEOUT_S = 5.0
_GO_DELAY_S = 0.05
_READY_TIMEOUT_S = 120.0
_STEP_READY_TIMEOUT_S = 300.0
"""A step may open tens of thousands of sockets, at a few thousand a second."""
_RESULT_SLACK_S = 60.0


class GeneratorError(RuntimeError):
    """A generator process failed a job, or did not answer in time."""


class Generators:
    """A few generator processes (spawned, so they share no state with the harness)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []
        for index in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main, args=(child,), name=f"bench-loadgen-{index}", daemon=True
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)

    @property
    def count(self) -> int:
        """How many generator processes there are."""
        return len(self._conns)

    @property
    def pids(self) -> list[int]:
        """Process ids of the generators."""
        return [p.pid for p in self._processes if p.pid is not None]

    @staticmethod
    def _recv(conn: Connection, timeout: float, expected: str) -> Any:
        if not conn.poll(timeout):
            raise GeneratorError(f"no {expected!r} from a generator within {timeout:g}s")
        message = conn.recv()
        if "error" in message:
            raise GeneratorError(f"generator failed: {message['error']}")
        return message[expected]

    def run(self, jobs: list[dict[str, Any]], warmup: float, duration: float) -> list[Any]:
        """Run one job per generator in step: all ready, one shared window, all results."""
        for conn, job in zip(self._conns, jobs, strict=True):
            conn.send({**job, "duration": duration})
        readies = [self._recv(conn, _READY_TIMEOUT_S, "ready") for conn in self._conns]
        start_at = time.time() + _GO_DELAY_S + warmup
        for conn in self._conns:
            conn.send({"go": start_at})
        timeout = _GO_DELAY_S + warmup + duration + _RESULT_SLACK_S
        results = [self._recv(conn, timeout, "result") for conn in self._conns]
        for ready, result in zip(readies, results, strict=True):
            result["ready"] = ready
        return results

    def steps(
        self, jobs: list[dict[str, Any]], at_step: Callable[[int, list[Any]], None]
    ) -> list[Any]:
        """Run step jobs (``idle``): call ``at_step`` while every generator holds step i."""
        for conn, job in zip(self._conns, jobs, strict=True):
            conn.send(job)
        for index in range(len(jobs[0]["steps"])):
            readies = [self._recv(conn, _STEP_READY_TIMEOUT_S, "ready") for conn in self._conns]
            at_step(index, readies)
            for conn in self._conns:
                conn.send({"next": index})
        return [self._recv(conn, _RESULT_SLACK_S, "result") for conn in self._conns]

    def close(self) -> None:
        """Ask every generator to exit; terminate, then kill, any that does not."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):
                continue
        for process in self._processes:
            process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(_JOIN_TIMEOUT_S)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()
