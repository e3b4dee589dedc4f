"""A fake OpenAI-compatible model server: real HTTP, real SSE, scripted per test.

``POST /v1/chat/completions`` answers with the next :class:`Reply` of the
script (the last one again once the script runs out). Each reply is a status
and a body, or a ``text/event-stream`` of chunks that may end cleanly with
``data: [DONE]``, break off (the connection closes mid-body), or hang until
the client goes away. The server records every request body and sees the
client disconnect, so a test can check what the agent sent and that it
closed its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from support import free_socket


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``status`` other than 200 sends ``body`` as JSON. Otherwise each of
    ``events`` goes out as one SSE ``data:`` line (a dict as JSON, a str as
    is); then the stream ends with ``[DONE]``, or, per ``end``, ends without
    it (``"eof"``), closes the connection mid-body (``"drop"``) or waits for
    the client to leave (``"hang"``).
    """

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    events: Sequence[dict[str, Any] | str] = ()
    end: str = "done"


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [choice],
    }


def text_reply(*pieces: str, end: str = "done") -> Reply:
    """The answer ``"".join(pieces)``, one content delta per piece, then ``stop``."""
    events: list[dict[str, Any] | str] = [_chunk({"role": "assistant", "content": ""})]
    events.extend(_chunk({"content": piece}) for piece in pieces)
    if end == "done":
        events.append(_chunk({}, "stop"))
    return Reply(events=events, end=end)


def tool_call_reply(
    call_id: str, name: str, arguments: str, *, preamble: str = "", pieces: int = 3
) -> Reply:
    """One tool call whose name and arguments are each split across ``pieces`` chunks.

    The id and the first piece of the name come in the first chunk, as the
    hosted API sends them; ``preamble`` is content text before the call.
    """
    events: list[dict[str, Any] | str] = [_chunk({"role": "assistant", "content": preamble})]
    name_parts = _split(name, pieces)
    argument_parts = _split(arguments, pieces)
    for number, (name_part, argument_part) in enumerate(
        zip(name_parts, argument_parts, strict=True)
    ):
        call: dict[str, Any] = {
            "index": 0,
            "function": {"name": name_part, "arguments": argument_part},
        }
        if number == 0:
            call |= {"id": call_id, "type": "function"}
        events.append(_chunk({"tool_calls": [call]}))
    events.append(_chunk({}, "tool_calls"))
    return Reply(events=events)


def _split(text: str, pieces: int) -> list[str]:
    size = -(-len(text) // pieces) if text else 1
    parts = [text[i : i + size] for i in range(0, len(text), size)] if text else []
    return parts + [""] * (pieces - len(parts))


def error_reply(status: int, message: str) -> Reply:
    """An error in the shape the hosted API sends it."""
    return Reply(status=status, body={"error": {"message": message, "type": "fake", "code": None}})


@dataclass
class FakeOpenAI:
    """The running fake: its URL, its script, and what it saw."""

    port: int
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    streaming: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answer(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order; the last one repeats."""
        self.script = list(replies)

    def _next(self) -> Reply:
        if not self.script:
            return error_reply(500, "the test scripted no reply")
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        request = Request(scope, receive)
        if request.method != "POST" or request.url.path != "/v1/chat/completions":
            await self._json(send, 404, {"error": {"message": "not found"}})
            return
        self.requests.append(json.loads(await request.body()))
        self.headers.append(dict(request.headers))
        reply = self._next()
        if reply.status != 200:
            await self._json(send, reply.status, reply.body)
            return
        await self._stream(reply, receive, send)

    async def _json(self, send: Send, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _stream(self, reply: Reply, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in reply.events:
            line = event if isinstance(event, str) else json.dumps(event)
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {line}\n\n".encode(),
                    "more_body": True,
                }
            )
        if reply.end == "done":
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        elif reply.end == "hang":
            self.streaming.set()
            # The request body was read: the next message is the client leaving.
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
        elif reply.end == "eof":
            await send({"type": "http.response.body", "body": b""})
        elif reply.end != "drop":
            raise ValueError(f"unknown end {reply.end!r}")
        # "drop": returning with the body unfinished makes uvicorn close the
        # connection without the final chunk, as a crashed upstream would.


@contextlib.asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a :class:`FakeOpenAI` with uvicorn on a free port of 127.0.0.1, in this loop."""
    sock = free_socket()
    fake = FakeOpenAI(port=sock.getsockname()[1])
    config = uvicorn.Config(fake, lifespan="off", log_level="critical", access_log=False)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield fake
    finally:
        server.should_exit = True
        await task
        sock.close()
