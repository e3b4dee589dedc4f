"""Routing a session's server frames to what waits for them. Pure: no I/O.

Run events go through a per-thread :class:`~chatgate.client.events.ThreadCursor`
(each event once, in order, across reconnections) and then to the
:class:`~chatgate.client.runs.RunStream` of their run; answers go to the
request that asked (by its id, or by thread for ``resume_complete``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chatgate.client.errors import ClientError, Interrupted, MessageNotConfirmed, RequestFailed
from chatgate.client.events import Event, ThreadCursor
from chatgate.client.runs import Pending, RequestKind, RunStream

log = logging.getLogger("chatgate.client")


class Router:
    """The waiting side of one session: runs, pending requests, thread positions."""

    def __init__(
        self,
        on_event: Callable[[Event], None] | None = None,
        on_expiring: Callable[[], None] | None = None,
    ) -> None:
        self.cursors: dict[str, ThreadCursor] = {}
        self.runs: dict[str, RunStream] = {}
        self.pending: dict[str, Pending] = {}
        self._on_event = on_event
        self._on_expiring = on_expiring

    def cursor(self, thread_id: str, after_event_id: int | None = None) -> ThreadCursor:
        """The thread's cursor; a thread not seen yet starts after ``after_event_id`` (or 0)."""
        found = self.cursors.get(thread_id)
        if found is None or found.last is None:
            found = self.cursors[thread_id] = ThreadCursor(after_event_id or 0)
        return found

    def dispatch(self, event: Event) -> None:
        """Route one server frame."""
        if event.in_thread:
            self._on_thread_event(event)
            return
        match event.type:
            case "message_ack":
                self._on_ack(event)
            case "pong":
                self._answer(event.payload.get("id"), event)
            case "resume_complete":
                self._on_resume_complete(event)
            case "token_refreshed":
                self._first_of(RequestKind.REFRESH, event)
            case "token_expiring":
                if self._on_expiring is not None:
                    self._on_expiring()
            case "error":
                self._on_error(event)
            case _:
                log.debug("ignoring a %s frame", event.type)

    def _answer(self, request_id: object, event: Event) -> None:
        pending = self.pending.get(request_id) if isinstance(request_id, str) else None
        if pending is not None:
            pending.resolve(event)

    def _first_of(self, kind: RequestKind, event: Event, thread_id: str | None = None) -> None:
        for pending in self.pending.values():
            if pending.kind is kind and (thread_id is None or pending.thread_id == thread_id):
                pending.resolve(event)
                return

    def _on_ack(self, event: Event) -> None:
        request_id = event.payload.get("client_message_id")
        pending = self.pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None:
            return
        run = pending.run = RunStream(event.payload)
        self.runs[run.run_id] = run
        if pending.thread_id is None and run.thread_id not in self.cursors:
            # A new thread: its log starts at 1.
            self.cursors[run.thread_id] = ThreadCursor(0)
        pending.resolve(event)

    def _on_thread_event(self, event: Event) -> None:
        thread_id = event.thread_id or ""
        cursor = self.cursors.get(thread_id)
        if cursor is None:
            cursor = self.cursors[thread_id] = ThreadCursor()
        for ready in cursor.accept(event):
            self._release(ready)

    def _release(self, event: Event) -> None:
        run = self.runs.get(event.run_id or "")
        if run is not None:
            run.put(event)
            if event.ends_run:
                del self.runs[run.run_id]
        for pending in self.pending.values():
            if pending.kind is RequestKind.RESUME and pending.thread_id == event.thread_id:
                pending.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _on_resume_complete(self, event: Event) -> None:
        thread_id = event.thread_id or ""
        cursor = self.cursors.get(thread_id)
        if cursor is not None:
            # What is still held sits past a gap the server's log does not fill.
            for ready in cursor.flush():
                self._release(ready)
        self._first_of(RequestKind.RESUME, event, thread_id)

    def _on_error(self, event: Event) -> None:
        payload = event.payload
        error = RequestFailed(
            str(payload.get("code")), str(payload.get("message")), payload.get("correlation_id")
        )
        request_id = payload.get("id")
        pending = self.pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None:
            log.warning("server error: %s", error)
            return
        if pending.kind is RequestKind.RESUME and error.code == "thread_not_found":
            self.cursors.pop(pending.thread_id or "", None)
        pending.fail(error)

    def interrupt(self, cause: ClientError) -> None:
        """The socket is lost: fail what cannot survive a new one; resumes and runs carry over."""
        for pending in self.pending.values():
            if pending.kind is RequestKind.MESSAGE:
                pending.fail(MessageNotConfirmed(cause))
            elif pending.kind is not RequestKind.RESUME:
                pending.fail(Interrupted(cause))

    def stop(self, error: ClientError) -> None:
        """The session is over: every waiter and every run gets ``error``."""
        for pending in self.pending.values():
            pending.fail(error)
        for run in self.runs.values():
            run.put(error)
        self.runs.clear()

    def resume_frames(self, next_id: Callable[[], str]) -> list[dict[str, Any]]:
        """A ``resume`` for every tracked thread, from the last event released."""
        return [
            {
                "type": "resume",
                "id": next_id(),
                "thread_id": thread_id,
                "after_event_id": cursor.last or 0,
            }
            for thread_id, cursor in self.cursors.items()
        ]
