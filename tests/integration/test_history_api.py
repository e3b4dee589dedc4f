"""The history API of docs/protocol.md section 1, against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from databases import postgres_schema
from faults import TcpProxy
from support import E2E_KEY, chat, established, running_server, sign_token, user_claims


async def get(server: Any, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with server.http() as client:
        return await client.get(path, headers=headers)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert response.headers["cache-control"] == "no-store"
    return body


@pytest.fixture(params=["memory", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'api.db'}"


async def test_a_user_sees_the_threads_and_messages_of_a_chat(database_url: str) -> None:
    async with running_server(database_url=database_url) as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            frames = await chat(ws, "what is 6*7?")
            thread_id = frames[0]["thread_id"]
            await chat(ws, "and 2+2?", thread_id=thread_id, msg_id="m2")
            await chat(ws, "hello", msg_id="m3")

        listed = await get(server, "/api/threads", token)
        assert listed.status_code == 200
        threads = listed.json()["threads"]
        assert len(threads) == 2
        # Most recently updated first; two threads touched within the same
        # millisecond may come in either order.
        stamps = [t["updated_at"] for t in threads]
        assert stamps == sorted(stamps, reverse=True)
        by_id = {t["thread_id"]: t for t in threads}
        assert by_id[thread_id]["title"] == "what is 6*7?"

        history = await get(server, f"/api/threads/{thread_id}/messages", token)
        assert history.status_code == 200
        body = history.json()
        assert body["thread"]["thread_id"] == thread_id
        turns = [(m["role"], m["content"]) for m in body["messages"]]
        assert turns == [
            ("user", "what is 6*7?"),
            ("assistant", "6*7 = 42"),
            ("user", "and 2+2?"),
            ("assistant", "2+2 = 4"),
        ]
        assert body["messages"][0]["message_id"] == frames[0]["payload"]["message_id"]
        assert body["messages"][0]["run_id"] == frames[0]["run_id"]


async def test_another_users_thread_is_404_like_a_missing_one() -> None:
    async with running_server() as server:
        async with server.connect(server.token("alice")) as ws:
            await established(ws)
            thread_id = (await chat(ws, "private"))[0]["thread_id"]
        mallory = server.token("mallory")
        theirs = assert_error(
            await get(server, f"/api/threads/{thread_id}/messages", mallory),
            404,
            "thread_not_found",
        )
        missing = assert_error(
            await get(server, "/api/threads/th_missing/messages", mallory), 404, "thread_not_found"
        )
        assert theirs == missing
        listed = await get(server, "/api/threads", mallory)
        assert listed.json() == {"threads": []}


async def test_no_credential_is_401_auth_required() -> None:
    async with running_server() as server:
        response = await get(server, "/api/threads", None)
        assert_error(response, 401, "auth_required")
        assert response.headers["www-authenticate"] == "Bearer"


def rejected_token(server: Any, problem: str) -> str:
    if problem == "expired":
        return server.token("alice", ttl_s=-10)
    if problem == "wrong key":
        return sign_token(user_claims("alice"), key="another-secret-0123456789abcdef-xyz")
    if problem == "not a jwt":
        return "not.a.jwt"
    return sign_token(user_claims("e2e:alice"))


@pytest.mark.parametrize(
    ("problem", "code"),
    [
        ("expired", "auth_expired"),
        ("wrong key", "auth_invalid"),
        ("not a jwt", "auth_invalid"),
        ("test namespace", "session_invalid"),
    ],
)
async def test_a_rejected_credential_is_401_and_never_echoed(problem: str, code: str) -> None:
    async with running_server() as server:
        token = rejected_token(server, problem)
        for path in ("/api/threads", "/api/threads/th_x/messages"):
            response = await get(server, path, token)
            assert_error(response, 401, code)
            assert token not in response.text
            assert "invalid_token" in response.headers["www-authenticate"]


async def test_a_header_that_is_not_bearer_is_401() -> None:
    async with running_server() as server, server.http() as client:
        response = await client.get("/api/threads", headers={"Authorization": "Basic YWxpY2U6cHc="})
        assert_error(response, 401, "auth_invalid")
        assert "YWxpY2U6cHc=" not in response.text


async def test_test_tokens_read_the_test_users_history() -> None:
    async with running_server(e2e_oauth_simulation_key=E2E_KEY) as server:
        bot = server.test_token("bot")
        async with server.connect(bot) as ws:
            hello = await established(ws)
            assert hello["payload"]["user_id"] == "e2e:bot"
            thread_id = (await chat(ws, "hi"))[0]["thread_id"]
        listed = await get(server, "/api/threads", bot)
        assert [t["thread_id"] for t in listed.json()["threads"]] == [thread_id]
        # The real user "bot" is someone else.
        assert (await get(server, "/api/threads", server.token("bot"))).json() == {"threads": []}


@pytest.mark.integration
async def test_a_store_that_is_down_is_503_until_it_returns() -> None:
    async with postgres_schema() as url:
        proxy = TcpProxy(("127.0.0.1", 5432))
        await proxy.start()
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        try:
            async with running_server(database_url=proxied) as server:
                token = server.token("alice")
                assert (await get(server, "/api/threads", token)).status_code == 200
                await proxy.cut()
                down = await get(server, "/api/threads", token)
                body = assert_error(down, 503, "store_unavailable")
                assert "5432" not in body["message"]
                assert str(proxy.port) not in body["message"]
                await proxy.start()
                assert (await get(server, "/api/threads", token)).json() == {"threads": []}
        finally:
            await proxy.close()


async def test_history_is_paged_from_the_most_recent_and_says_where_the_next_page_is() -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            thread_id = (await chat(ws, "what is 0+1?"))[0]["thread_id"]
            for turn in range(1, 5):
                await chat(ws, f"what is {turn}+1?", thread_id=thread_id, msg_id=f"m{turn}")
        path = f"/api/threads/{thread_id}/messages"
        whole = (await get(server, path, token)).json()
        assert len(whole["messages"]) == 10
        assert whole["next"] is None
        pages, next_path = [], f"{path}?limit=3"
        while next_path is not None:
            body = (await get(server, next_path, token)).json()
            pages.insert(0, body["messages"])
            next_path = body["next"]
        assert [len(page) for page in pages] == [1, 3, 3, 3]
        assert [m for page in pages for m in page] == whole["messages"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=²", "before=a%00b"])
async def test_a_bad_page_query_is_400_naming_the_parameter(query: str) -> None:
    async with running_server() as server:
        token = server.token("alice")
        async with server.connect(token) as ws:
            await established(ws)
            thread_id = (await chat(ws, "hi"))[0]["thread_id"]
        response = await get(server, f"/api/threads/{thread_id}/messages?{query}", token)
        body = assert_error(response, 400, "invalid_request")
        assert query.split("=", maxsplit=1)[0] in body["message"]
