"""Agent runs: driving an agent, numbering its events, storing and publishing them.

A run belongs to a user and a thread, not to a socket: it goes on when the
socket that started it goes away, and its events stay available for ``resume``.

An event is published only once the store has committed it, so a client never
sees an event the log could lose. Each run is recorded in the store with the
id of the instance running it, so that a run whose process dies can be ended
later with ``agent_error`` ``run_interrupted`` (see ``chatgate.chat.recovery``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from chatgate.agents.base import AgentFailure, HistoryEntry, RunContext
from chatgate.agents.loader import LoadedAgent
from chatgate.broker.base import Broker
from chatgate.chat.answer import AgentContractError, UnknownEvent
from chatgate.chat.inflight import FINAL, Run, interrupted_payload
from chatgate.chat.publisher import MAX_QUEUED, ThreadPublisher, settled
from chatgate.errors import StoreUnavailable
from chatgate.logs import correlation_id, get_logger
from chatgate.models import Delivery, RunRecord, RunStatus, StoredEvent
from chatgate.ops.metrics import Metrics
from chatgate.protocol import event_frame
from chatgate.store.base import Store

log = get_logger("chatgate.chat.runs")
T = TypeVar("T")

_FAILURE_MESSAGE_CHARS = 300


class RunManager:
    """Starts, cancels and tracks runs in this process.

    ``instance_id`` is the id runs are recorded under; ``Recovery.start`` sets
    it when the instance registers, if the constructor was not given it.
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        agent: LoadedAgent,
        instance_id: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._broker = broker
        self._agent = agent
        self._runs: dict[str, Run] = {}
        # Plain dicts: Counter's missing-key and delete hooks are Python calls, twice a run.
        self._per_connection: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self._publishers: dict[str, ThreadPublisher] = {}
        # Threads whose event a run is publishing itself (see ``_publish_now``).
        self._publishing: set[str] = set()
        self._stopping = False
        self._takes_context = _takes_context(agent.agent)
        self._metrics = metrics if metrics is not None else Metrics()
        self.instance_id = instance_id

    def running(self) -> int:
        """How many runs are going on in this process."""
        return len(self._runs)

    def in_flight(self, connection_id: str) -> int:
        """How many runs started from ``connection_id`` are still going."""
        return self._per_connection.get(connection_id, 0)

    async def user_in_flight(self, user_id: str) -> int:
        """How many runs of ``user_id`` are going: here, and on the other instances.

        With a broker shared by several instances the store says how many of the
        user's runs the others are running; a lone instance knows all of its own.

        Raises:
            StoreUnavailable: the store does not answer.
        """
        here = self._per_user.get(user_id, 0)
        if not self._broker.shared:
            return here
        return here + await self._store.count_running_runs(user_id, self.instance_id)

    def start(
        self,
        *,
        run_id: str,
        thread_id: str,
        user_id: str,
        connection_id: str,
        history: Sequence[HistoryEntry],
        text: str,
        message_id: str = "",
        claims: Mapping[str, Any] | None = None,
        received_at: float = 0.0,
        recorded: bool = False,
    ) -> Run:
        """Start a run in the background and return it.

        ``message_id`` is the user message that started the run; it and the
        verified ``claims`` reach an agent that accepts a ``context``.
        ``received_at`` (``time.perf_counter()`` when the message arrived) times
        the run's first event. ``recorded``: the caller already stored the run's
        record (``Store.queue_run``); otherwise the run stores it first.
        """
        run = Run(run_id, thread_id, user_id, connection_id, received_at=received_at)
        self._runs[run_id] = run
        per_connection, per_user = self._per_connection, self._per_user
        per_connection[connection_id] = per_connection.get(connection_id, 0) + 1
        per_user[user_id] = per_user.get(user_id, 0) + 1
        # Built only for an agent that takes it: a frozen dataclass is not free.
        context = (
            RunContext(user_id, thread_id, run_id, message_id, claims or {})
            if self._takes_context
            else None
        )
        # The loop's own create_task: asyncio.create_task adds two Python calls a run.
        run.task = asyncio.get_running_loop().create_task(
            self._execute(run, list(history), text, context, recorded=recorded), name=run_id
        )
        run.task.add_done_callback(lambda _: self._forget(run))
        return run

    def _forget(self, run: Run) -> None:
        self._runs.pop(run.run_id, None)
        _release(self._per_connection, run.connection_id)
        _release(self._per_user, run.user_id)

    def cancel(self, user_id: str, run_id: str) -> bool:
        """Ask the user's run to stop; False when no such run of this user is going."""
        run = self._runs.get(run_id)
        if run is None or run.user_id != user_id:
            return False
        run.cancel_requested = True
        # Interrupt only an agent that is waiting; a write to the store or the
        # broker in progress is left to finish so the log stays whole.
        if run.awaiting_agent and run.task is not None:
            run.task.cancel()
        return True

    async def request_cancel(self, user_id: str, run_id: str) -> bool:
        """Cancel the user's run wherever it executes; False when it is not running.

        A run of another instance is cancelled through the broker's control
        channel; the store says whether such a run of this user is still going.
        """
        if self.cancel(user_id, run_id):
            return True
        # The record is committed before the run's ack is sent (see ChatService):
        # a cancel the client sends after the ack finds it.
        record = await self._store.get_run(user_id, run_id)
        if record is None or record.status != "running":
            return False
        await self._broker.publish_control({"op": "cancel", "user_id": user_id, "run_id": run_id})
        return True

    def on_control(self, message: dict[str, Any]) -> None:
        """Act on a control message from any instance (only ``cancel`` so far)."""
        user_id, run_id = message.get("user_id"), message.get("run_id")
        if message.get("op") == "cancel" and isinstance(user_id, str) and isinstance(run_id, str):
            self.cancel(user_id, run_id)

    async def shutdown(self) -> None:
        """Stop every run, each ending with ``agent_error`` ``run_interrupted``."""
        self._stopping = True
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def emit(self, run: Run, kind: str, payload: dict[str, Any]) -> None:
        """Queue one event of ``run`` for the store; it is published once committed.

        Raises:
            StoreUnavailable: an earlier write of the run failed (nothing after
                it is published).
            TypeError: the payload cannot be encoded as JSON.
        """
        if run.queued >= MAX_QUEUED:
            await settled(run)
        if run.failure is not None:
            raise run.failure
        thread_id = run.thread_id
        result = self._store.queue_event(thread_id, run.run_id, kind, payload)
        if kind in FINAL:
            run.ended = True
        event = self._hand_over(run, result, publish=True)
        if event is not None:
            # Published from the run's task; a publisher made for the thread
            # meanwhile holds the thread's later events until this one is out.
            self._publishing.add(thread_id)
            try:
                await self._publish(run, event)
            finally:
                self._publishing.discard(thread_id)
                waiting = self._publishers.get(thread_id)
                if waiting is not None and waiting.held:
                    waiting.release()
        if kind == "agent_text_delta":
            self._metrics.text_deltas += 1
        elif kind == "agent_error":
            self._metrics.agent_error(str(payload.get("code")))

    def _hand_over(self, run: Run, result: Awaitable[T], *, publish: bool) -> T | None:
        """Give a queued write to the thread's publisher, or return what the run publishes now.

        A write already committed (a done future: a store in this process),
        with nothing of its thread waiting before it, needs no publisher: when
        ``publish``, it is returned for the run to publish itself; otherwise None.
        """
        thread_id = run.thread_id
        if (
            not isinstance(result, asyncio.Future)
            or not result.done()
            or thread_id in self._publishers
            or thread_id in self._publishing
        ):
            self._publisher(thread_id).push(run, result, publish=publish)
            return None
        failure = result.exception()
        if failure is not None:
            if run.failure is None:
                run.failure = failure
            return None
        return result.result() if publish and run.failure is None else None

    def _publisher(self, thread_id: str) -> ThreadPublisher:
        found = self._publishers.get(thread_id)
        if found is None:
            found = ThreadPublisher(thread_id, self._publish, self._publisher_idle)
            # An event of the thread is going out from a run's task: later ones wait.
            found.held = thread_id in self._publishing
            self._publishers[thread_id] = found
        return found

    def _publisher_idle(self, publisher: ThreadPublisher) -> None:
        if self._publishers.get(publisher.thread_id) is publisher:
            del self._publishers[publisher.thread_id]

    async def _publish(self, run: Run, event: StoredEvent) -> None:
        delivery = Delivery(event.thread_id, event.event_id, event_frame(event))
        # Not waiting for a remote broker's answer: a turn's events then share
        # its round trips. One it does not take is in the log, and sockets get
        # it through resume; the broker says so, and the run goes on.
        await self._broker.publish_soon(run.user_id, delivery)
        if run.received_at:
            self._metrics.first_event.observe(time.perf_counter() - run.received_at)
            run.received_at = 0.0

    async def _settle(self, run: Run) -> None:
        """Wait for every write of ``run`` to be committed; raise the first that failed."""
        await settled(run)
        if run.failure is not None:
            raise run.failure

    async def end_orphan(self, record: RunRecord) -> None:
        """Give a run whose process stopped its final ``agent_error`` ``run_interrupted``.

        ``record`` was claimed from the store (already marked interrupted); a
        run whose log already ends with its final event gets nothing more.
        """
        if record.ended:
            return
        cid = correlation_id()
        log.warning(
            "run interrupted",
            run_id=record.run_id,
            instance_id=record.instance_id,
            correlation_id=cid,
        )
        run = Run(record.run_id, record.thread_id, record.owner, connection_id="")
        await self.emit(run, "agent_error", interrupted_payload(cid))
        await self._settle(run)
        self._metrics.run_ended("interrupted")

    async def _execute(
        self,
        run: Run,
        history: list[HistoryEntry],
        text: str,
        context: RunContext | None,
        *,
        recorded: bool,
    ) -> None:
        try:
            if not recorded:
                # Queued with the first events: they share one commit.
                record = RunRecord(run.run_id, run.thread_id, run.user_id, self.instance_id)
                self._hand_over(run, self._store.queue_run(record), publish=False)
            await self.emit(run, "agent_started", {"agent": self._agent.name})
            status = await self._outcome(run, history, text, context)
            # Queued right after the final event: usually in its commit.
            self._hand_over(run, self._store.queue_run_end(run.run_id, status), publish=False)
            await self._settle(run)
            self._metrics.run_ended(status)
        except StoreUnavailable:
            # Nothing more of this run can be kept. It stays recorded as
            # running, and this instance's next start ends it as interrupted
            # (and counts it then).
            log.warning("run abandoned: store unavailable", run_id=run.run_id)
        except Exception:
            # The store refused one of the run's writes. The gateway hands it
            # nothing it should refuse, so this is a bug: logged with a
            # correlation id, and the run still ends with one final event.
            cid = correlation_id()
            log.exception(
                "run failed: the store refused a write", run_id=run.run_id, correlation_id=cid
            )
            await self._refused(run, cid)

    async def _refused(self, run: Run, cid: str) -> None:
        """End a run whose write the store refused, and record it as failed.

        It gets ``agent_error`` ``internal_error`` unless its final event was queued already.
        """
        run.failure = None
        try:
            if not run.ended:
                await self._fail(run, "internal_error", "the gateway failed to store the run", cid)
            self._hand_over(run, self._store.queue_run_end(run.run_id, "failed"), publish=False)
            await self._settle(run)
        except Exception:  # noqa: BLE001 - logged; the run is over either way
            log.warning("run not ended in the store", run_id=run.run_id, correlation_id=cid)
        self._metrics.run_ended("failed")

    def _iterate(
        self, history: list[HistoryEntry], text: str, context: RunContext | None
    ) -> AsyncIterator[Any]:
        agent = self._agent.agent
        if context is not None:
            return aiter(agent.run(history, text, context=context))  # type: ignore[call-arg]
        return aiter(agent.run(history, text))

    async def _outcome(
        self, run: Run, history: list[HistoryEntry], text: str, context: RunContext | None
    ) -> RunStatus:
        """Drive the agent to the run's final event; return how the run ended."""
        events: AsyncIterator[Any] | None = None
        try:
            events = self._iterate(history, text, context)
            await self._drive(run, events)
        except asyncio.CancelledError:
            if self._stopping:
                await self.emit(run, "agent_error", interrupted_payload(correlation_id()))
                return "interrupted"
            if not run.cancel_requested:
                raise
            await self._finish(run, run.answer.cancelled())
            return "cancelled"
        except StoreUnavailable:
            raise
        except AgentFailure as failure:
            # A failure the agent named (the model refused the key, ...): no bug here.
            cid = correlation_id()
            log.warning("agent failed", run_id=run.run_id, code=failure.code, correlation_id=cid)
            await self._fail(run, failure.code, failure.message[:_FAILURE_MESSAGE_CHARS], cid)
            return "failed"
        except Exception:
            if run.failure is not None:
                # Not the agent's: the store refused an earlier write of the run.
                raise
            # The agent is user code: its failure ends the run, never the process.
            cid = correlation_id()
            log.exception("agent failed", run_id=run.run_id, correlation_id=cid)
            await self._fail(run, "agent_failed", "the agent failed", cid)
            return "failed"
        finally:
            if events is not None:
                await _close_quietly(events)
        return "completed"

    async def _fail(self, run: Run, code: str, message: str, cid: str) -> None:
        payload = {"code": code, "message": message, "correlation_id": cid}
        await self.emit(run, "agent_error", payload)

    async def _finish(self, run: Run, payload: dict[str, Any]) -> None:
        """Store the answer, then tell the clients: the history holds it before they hear."""
        stored = self._store.queue_message(
            run.thread_id, "assistant", payload["text"], run.run_id, run.answer.message_id
        )
        # Queued before the event: committed first, or in the same transaction.
        self._hand_over(run, stored, publish=False)
        await self.emit(run, "agent_completed", payload)

    async def _drive(self, run: Run, events: AsyncIterator[Any]) -> None:
        answer = run.answer
        step = events.__anext__
        while True:
            if run.cancel_requested:
                raise asyncio.CancelledError
            # Only while the agent has the turn may a cancel interrupt the run.
            run.awaiting_agent = True
            try:
                item = await step()
            except StopAsyncIteration:
                raise AgentContractError("ended without agent_completed") from None
            finally:
                run.awaiting_agent = False
            try:
                kind, payload = answer.event(item)
            except UnknownEvent as unknown:
                log.warning(
                    "agent event of unknown type skipped", run_id=run.run_id, type=str(unknown)
                )
                continue
            if kind == "agent_completed":
                await self._finish(run, payload)
                return
            await self.emit(run, kind, payload)


async def _close_quietly(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        # The run is already over; an agent that fails while cleaning up changes nothing.
        with contextlib.suppress(Exception):
            await aclose()


def _takes_context(agent: object) -> bool:
    """Whether the agent's ``run`` accepts a ``context`` keyword (older agents do not)."""
    try:
        parameters = inspect.signature(getattr(agent, "run")).parameters  # noqa: B009
    except (TypeError, ValueError):
        return False
    return "context" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _release(counts: dict[str, int], key: str) -> None:
    """Count one run fewer under ``key``, forgetting keys at zero (the counters stay small)."""
    left = counts[key] - 1
    if left > 0:
        counts[key] = left
    else:
        del counts[key]
