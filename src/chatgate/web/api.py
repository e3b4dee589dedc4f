"""The history API (docs/protocol.md section 1): a user's threads and a thread's messages.

Requests authenticate as sockets do: ``Authorization: Bearer <jwt>``, checked
by the same verifier and mapped to the user id by the same session rules (test
tokens included where E2E mode is on). Answers:

- ``401`` ``{"error": "<slug>", "message": ...}``: no credential, or one rejected
  (the slugs of docs/protocol.md section 5: ``auth_required``, ``auth_invalid``,
  ``auth_expired``, ``e2e_not_enabled``, ``session_invalid``);
- ``404`` ``thread_not_found``: the thread does not exist or is another user's
  (never ``403``: whether a thread exists is not the caller's to learn);
- ``503`` ``store_unavailable`` (or ``try_again_later`` when signing keys cannot be fetched).

The token is never echoed, in a body or a log line.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from chatgate.auth.credentials import read_handshake
from chatgate.chat.session import user_id_for
from chatgate.closecodes import CLOSE_CODES, CloseCode
from chatgate.errors import AuthError, CloseConnection, StoreUnavailable
from chatgate.gateway import Gateway
from chatgate.models import Message, Thread

_PRIVATE = {"Cache-Control": "no-store"}
_RETRY_AFTER_S = "1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message}, status_code=status, headers={**_PRIVATE, **headers}
    )


def _rejected(exc: CloseConnection) -> JSONResponse:
    """The answer to a credential the socket would have closed for."""
    slug = CLOSE_CODES[exc.code].slug
    if exc.code == CloseCode.TRY_AGAIN_LATER:
        return _error(503, slug, exc.detail, **{"Retry-After": _RETRY_AFTER_S})
    challenge = "Bearer" if exc.code == CloseCode.AUTH_REQUIRED else 'Bearer error="invalid_token"'
    return _error(401, slug, exc.detail, **{"WWW-Authenticate": challenge})


def thread_json(thread: Thread) -> dict[str, Any]:
    """A thread as the API shows it (the owner is the caller: not repeated)."""
    return {
        "thread_id": thread.id,
        "title": thread.title,
        "created_at": thread.created_at,
        "updated_at": thread.updated_at,
    }


def message_json(message: Message) -> dict[str, Any]:
    """A message as the API shows it."""
    return {
        "message_id": message.id,
        "role": message.role,
        "content": message.content,
        "run_id": message.run_id,
        "created_at": message.created_at,
    }


class HistoryAPI:
    """The endpoints, bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def _caller(self, request: Request) -> str:
        """The user id of the request's bearer token.

        Raises:
            AuthError: no credential, or a rejected one.
            SessionInvalid: the token's subject cannot be a user id.
        """
        token = read_handshake(request.headers.get("authorization"), []).token
        if token is None:
            raise AuthError(CloseCode.AUTH_REQUIRED, "send Authorization: Bearer <jwt>")
        return user_id_for(await self.gateway.verifier.verify_async(token))

    async def threads(self, request: Request) -> JSONResponse:
        """``GET /api/threads``: the caller's threads, most recently updated first."""
        try:
            user_id = await self._caller(request)
            found = await self.gateway.store.list_threads(user_id)
        except CloseConnection as exc:
            return _rejected(exc)
        except StoreUnavailable:
            return _unavailable()
        return JSONResponse({"threads": [thread_json(t) for t in found]}, headers=_PRIVATE)

    async def messages(self, request: Request) -> JSONResponse:
        """``GET /api/threads/{thread_id}/messages``: a page of the caller's thread, oldest first.

        ``?limit=`` (default 100, at most 1000) of the most recent messages,
        ``?before=<message_id>`` for the page before that one; ``next`` says
        where the page before this one is, or is null at the thread's start.
        """
        thread_id = request.path_params["thread_id"]
        page = _page(request.query_params.get("limit"), request.query_params.get("before"))
        if isinstance(page, JSONResponse):
            return page
        limit, before = page
        store = self.gateway.store
        try:
            user_id = await self._caller(request)
            thread = await store.get_thread(user_id, thread_id)
            found = (
                await store.list_messages(thread_id, limit=limit + 1, before=before)
                if thread is not None
                else []
            )
        except CloseConnection as exc:
            return _rejected(exc)
        except StoreUnavailable:
            return _unavailable()
        if thread is None:
            return _error(404, "thread_not_found", "no such thread")
        more = len(found) > limit
        if more:
            found = found[1:]
        following = (
            f"/api/threads/{thread_id}/messages?limit={limit}&before={found[0].id}"
            if more
            else None
        )
        body = {
            "thread": thread_json(thread),
            "messages": [message_json(m) for m in found],
            "next": following,
        }
        return JSONResponse(body, headers=_PRIVATE)


def _page(limit: str | None, before: str | None) -> tuple[int, str | None] | JSONResponse:
    """The page a query asks for, or the 400 that says what is wrong with it."""
    size = DEFAULT_PAGE
    if limit is not None:
        if not (limit.isascii() and limit.isdigit() and len(limit) <= len(str(MAX_PAGE))) or not (
            1 <= int(limit) <= MAX_PAGE
        ):
            return _error(400, "invalid_request", f"limit must be 1 to {MAX_PAGE}")
        size = int(limit)
    if before is not None and not _ID.fullmatch(before):
        return _error(400, "invalid_request", "before must be a message_id")
    return size, before


def _unavailable() -> JSONResponse:
    return _error(
        503,
        "store_unavailable",
        "the store does not answer; retry",
        **{"Retry-After": _RETRY_AFTER_S},
    )


def api_routes(gateway: Gateway) -> list[BaseRoute]:
    """The history API's routes, to add to the application."""
    api = HistoryAPI(gateway)
    return [
        Route("/api/threads", api.threads, methods=["GET"]),
        Route("/api/threads/{thread_id}/messages", api.messages, methods=["GET"]),
    ]
