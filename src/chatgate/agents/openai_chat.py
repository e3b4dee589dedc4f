"""The ``openai`` agent: any server that speaks the OpenAI Chat Completions API, streamed.

The hosted API, vLLM, Ollama, llama.cpp, LM Studio and LiteLLM all do. The
agent sends the thread with ``stream: true``, turns content deltas into
``agent_text_delta``, offers the calculator as the function tool
``calculator`` and sends the results of the calls the model makes back to it,
for at most :data:`MAX_ROUNDS` requests. A failure of the model server raises
:class:`~chatgate.agents.base.AgentFailure` with a ``model_*`` code; its
message never holds the API key.

The streams are read by the official ``openai`` package, an optional
dependency: ``pip install 'chatgate[openai]'``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import openai
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)
from pydantic import SecretStr

from chatgate.agents.base import AgentEvent, AgentFailure, HistoryEntry, RunContext
from chatgate.agents.calculator import CalculatorError, evaluate
from chatgate.agents.openai_failures import bad_response, failure_for, redact, server_address

MAX_ROUNDS = 8
"""Requests to the model in one run; the last one asks for an answer without tools."""

TOOL_NAME = "calculator"
CALCULATOR_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Compute an arithmetic expression exactly. Numbers and + - * / // % ** "
            "and parentheses only, in Python syntax, e.g. '(2+3)*4' or '2**10'."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "The arithmetic to compute."}
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}

_ARGUMENTS_ECHO_CHARS = 1000
_ROUND_SEPARATOR = "\n\n"


def _event(event_type: str, **payload: Any) -> AgentEvent:
    return {"type": event_type, "payload": payload}


@dataclass(slots=True)
class ToolCall:
    """One function call of the model, assembled from the pieces streamed at its index."""

    call_id: str = ""
    name: str = ""
    arguments: str = ""


def _optional_str(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_response(f"a {what} that is not text")
    return value


@dataclass(slots=True)
class StreamedRound:
    """What one streamed answer of the model amounts to: text, tool calls, and its end.

    A pure accumulator: :meth:`absorb` takes each chunk as the ``openai`` package
    built it (without validating it), checks the shapes it reads, and raises
    AgentFailure ``model_bad_response`` for anything else.
    """

    text: list[str] = field(default_factory=list)
    calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None

    def absorb(self, chunk: ChatCompletionChunk) -> str:
        """Add one chunk; return its content text ("" for none)."""
        choices: object = getattr(chunk, "choices", None)
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise bad_response("a chunk whose choices are not a list")
        piece = ""
        # Only the first choice is read: the request never asks for n > 1.
        for choice in choices[:1]:
            reason = getattr(choice, "finish_reason", None)
            if reason is not None:
                self.finish_reason = str(reason)
            delta = getattr(choice, "delta", None)
            if delta is None:
                continue
            piece = _optional_str(getattr(delta, "content", None), "content delta")
            self._absorb_calls(getattr(delta, "tool_calls", None))
        if piece:
            self.text.append(piece)
        return piece

    def _absorb_calls(self, pieces: object) -> None:
        if pieces is None:
            return
        if not isinstance(pieces, list):
            raise bad_response("tool calls that are not a list")
        for piece in pieces:
            index = getattr(piece, "index", None)
            if isinstance(index, bool) or not isinstance(index, int):
                raise bad_response("a tool call without an index")
            call = self.calls.setdefault(index, ToolCall())
            call_id = _optional_str(getattr(piece, "id", None), "tool call id")
            # The id comes once, or again unchanged on every piece, by server.
            call.call_id = call.call_id or call_id
            function = getattr(piece, "function", None)
            if function is not None:
                call.name += _optional_str(getattr(function, "name", None), "tool name")
                arguments = getattr(function, "arguments", None)
                call.arguments += _optional_str(arguments, "tool arguments")

    def tool_calls(self) -> list[ToolCall]:
        """The calls in index order, each with an id (made up when the server sent none)."""
        calls = [self.calls[index] for index in sorted(self.calls)]
        for call in calls:
            call.call_id = call.call_id or f"call_{uuid.uuid4().hex}"
        return calls


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A tool call's result or error, and how long it took."""

    result: int | float | None
    error: str | None
    duration_ms: float

    def content(self) -> str:
        """The ``tool`` message's content sent back to the model."""
        if self.error is not None:
            return json.dumps({"error": self.error})
        return json.dumps({"result": self.result})


def parse_arguments(raw: str) -> dict[str, Any]:
    """The call's arguments as an object, or ``{"raw": <text>}`` when they are not one."""
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"raw": raw[:_ARGUMENTS_ECHO_CHARS]}


def run_tool(name: str, arguments: dict[str, Any]) -> ToolOutcome:
    """Run one call; an unknown tool or bad arguments give an error outcome, never raise."""
    started = time.perf_counter()
    result: int | float | None = None
    error: str | None = None
    expression = arguments.get("expression")
    if name != TOOL_NAME:
        error = f"unknown tool {name[:100]!r}; the only tool is {TOOL_NAME!r}"
    elif not isinstance(expression, str) or set(arguments) != {"expression"}:
        error = 'arguments must be {"expression": "<arithmetic>"}'
    else:
        # The calculator bounds length, size and magnitude: cheap enough to run inline.
        try:
            result = evaluate(expression)
        except CalculatorError as exc:
            error = str(exc)
    return ToolOutcome(result, error, (time.perf_counter() - started) * 1000)


def _history_message(entry: HistoryEntry) -> ChatCompletionMessageParam:
    if entry["role"] == "assistant":
        return {"role": "assistant", "content": entry["content"]}
    return {"role": "user", "content": entry["content"]}


def _assistant_turn(text: str, calls: Sequence[ToolCall]) -> ChatCompletionMessageParam:
    """The model's tool-calling answer, as it goes back into the conversation."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


# The openai package refuses to build a client without a key; servers that
# take none (Ollama, vLLM and llama.cpp by default) ignore this one.
_NO_KEY = "no-key"


class OpenAIChatAgent:
    """Answer through a model behind the OpenAI Chat Completions API, streamed.

    ``timeout_s`` bounds the wait for each piece of the answer (and for the
    connection, with at most ``connect_timeout_s``). The client never retries:
    a failure ends the run with its code, and the user decides to try again.
    """

    name: ClassVar[str] = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: SecretStr | str | None = None,
        system_prompt: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_rounds: int = MAX_ROUNDS,
    ) -> None:
        """Build the client; raise ValueError for an empty model or a round limit under 1."""
        if not model.strip():
            raise ValueError("model must name a model")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be 1 or more, got {max_rounds}")
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._key = key or None
        self._model = model
        self._system_prompt = system_prompt or None
        self._max_rounds = max_rounds
        self._where = server_address(base_url)
        self._client = openai.AsyncOpenAI(
            api_key=self._key or _NO_KEY,
            base_url=base_url,
            max_retries=0,
            timeout=openai.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        )

    async def aclose(self) -> None:
        """Close the connection pool to the model server."""
        await self._client.close()

    def _messages(
        self, history: Sequence[HistoryEntry], text: str
    ) -> list[ChatCompletionMessageParam]:
        messages: list[ChatCompletionMessageParam] = []
        if self._system_prompt:
            messages.append({"role": "system", "content": self._system_prompt})
        messages.extend(_history_message(entry) for entry in history)
        messages.append({"role": "user", "content": text})
        return messages

    def _failure(self, error: openai.OpenAIError, *, streaming: bool) -> AgentFailure:
        failure = failure_for(error, streaming=streaming, where=self._where)
        return AgentFailure(failure.code, redact(failure.message, self._key))

    async def _open(
        self, messages: list[ChatCompletionMessageParam], user: str | None, *, tools: bool
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """Send one request; the stream it returns is the caller's to close."""
        try:
            return await self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                stream=True,
                tools=[CALCULATOR_TOOL],
                # The last round asks for words: its tool calls could not be answered.
                tool_choice="auto" if tools else "none",
                user=user if user is not None else openai.omit,
            )
        except openai.OpenAIError as exc:
            # The cause is dropped: the package's message may quote the key.
            raise self._failure(exc, streaming=False) from None

    async def _next_chunk(
        self, stream: openai.AsyncStream[ChatCompletionChunk]
    ) -> ChatCompletionChunk | None:
        """The next chunk, or None at the end of the stream."""
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None
        except ValueError:
            # The package decodes each data line with json.loads as it comes.
            raise bad_response("a stream line that is not JSON") from None
        except openai.OpenAIError as exc:
            raise self._failure(exc, streaming=True) from None

    async def run(
        self, history: Sequence[HistoryEntry], text: str, *, context: RunContext | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Stream the model's answer to ``text``, running its calculator calls on the way.

        Raises:
            AgentFailure: the model server failed; the code says how (``model_*``).
        """
        messages = self._messages(history, text)
        user = context.user_id if context is not None else None
        answer: list[str] = []
        for round_number in range(1, self._max_rounds + 1):
            streamed = StreamedRound()
            stream = await self._open(messages, user, tools=round_number < self._max_rounds)
            # Leaving this block, also by aclose() or cancellation at a yield,
            # closes the HTTP response, which tells the model server to stop.
            async with stream:
                while (chunk := await self._next_chunk(stream)) is not None:
                    piece = streamed.absorb(chunk)
                    if not piece:
                        continue
                    if answer and len(streamed.text) == 1:
                        # Text of an earlier round (before a tool call) stays a paragraph apart.
                        piece = _ROUND_SEPARATOR + piece
                    answer.append(piece)
                    yield _event("agent_text_delta", text=piece)
            if streamed.finish_reason is None:
                raise bad_response("an answer that ended before it was finished")
            calls = streamed.tool_calls()
            if not calls:
                yield _event("agent_completed", text="".join(answer))
                return
            if round_number == self._max_rounds:
                break
            messages.append(_assistant_turn("".join(streamed.text), calls))
            for call in calls:
                arguments = parse_arguments(call.arguments)
                yield _event(
                    "tool_executing",
                    tool_call_id=call.call_id,
                    tool_name=call.name,
                    arguments=arguments,
                )
                outcome = run_tool(call.name, arguments)
                yield self._tool_completed(call, outcome)
                messages.append(
                    {"role": "tool", "tool_call_id": call.call_id, "content": outcome.content()}
                )
        raise bad_response(f"tool calls again after {self._max_rounds} requests")

    @staticmethod
    def _tool_completed(call: ToolCall, outcome: ToolOutcome) -> AgentEvent:
        payload: dict[str, Any] = {
            "tool_call_id": call.call_id,
            "tool_name": call.name,
            "result": outcome.result,
            "duration_ms": outcome.duration_ms,
        }
        if outcome.error is not None:
            payload["error"] = outcome.error
        return {"type": "tool_completed", "payload": payload}
