"""The chat page in real headless Chromium against real gateway processes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from slow_agent import ANSWER

from processes import free_port, server_process
from support import SECRET

try:
    from playwright.sync_api import expect
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "chat-page.png"
AGENT = "article.agent"


def _send(page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def _connected(page, user: str) -> None:
    expect(page.get_by_role("status")).to_have_text(f"Connected as {user}")


def _answer_text(page) -> str:
    return page.get_by_role("log").locator(f"{AGENT} .answer").last.inner_text()


def _wait_for_answer_longer_than(page, chars: int) -> str:
    page.wait_for_function(
        """([selector, chars]) => {
            const answers = document.querySelectorAll(selector);
            const last = answers[answers.length - 1];
            return last !== undefined && last.textContent.length > chars;
        }""",
        arg=[f"[role=log] {AGENT} .answer", chars],
    )
    return _answer_text(page)


def _view(page) -> dict:
    return json.loads(page.evaluate("sessionStorage.getItem('chatgate.view')"))


def test_answers_arithmetic_and_shows_the_calculator_call(demo_page, tokens) -> None:
    page = demo_page.page
    demo_page.open(tokens("alice"))
    _connected(page, "alice")
    assert "token" not in page.url
    _send(page, "what is 6*7?")
    agent = page.get_by_role("log").locator(AGENT).last
    expect(agent).not_to_have_class(re.compile(r"\bpending\b"))
    expect(agent.locator(".answer")).to_contain_text("42")
    expect(agent.locator(".tool-name")).to_have_text("calculator")
    expect(agent.locator(".tool-arguments")).to_contain_text("6*7")
    expect(agent.locator(".tool-result")).to_have_text("→ 42")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    threads = page.get_by_role("navigation", name="Threads").get_by_role("button")
    expect(threads).to_have_count(1)
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOT))


def test_the_answer_streams(slow_page, tokens) -> None:
    page = slow_page.page
    slow_page.open(tokens("streamer"))
    _connected(page, "streamer")
    _send(page, "count for me")
    first = _wait_for_answer_longer_than(page, 0)
    later = _wait_for_answer_longer_than(page, len(first))
    assert ANSWER.startswith(first)
    assert ANSWER.startswith(later)
    assert len(first) < len(later) < len(ANSWER)
    agent = page.get_by_role("log").locator(AGENT).last
    expect(agent).not_to_have_class(re.compile(r"\bpending\b"))
    assert _answer_text(page) == ANSWER
    expect(agent.locator(".tool-name")).to_have_text("counter")


def test_a_reload_mid_answer_keeps_the_text_exactly_once(slow_page, tokens) -> None:
    page = slow_page.page
    slow_page.open(tokens("reloader"))
    _connected(page, "reloader")
    _send(page, "count for me")
    before = _wait_for_answer_longer_than(page, len(ANSWER) // 4)
    assert len(before) < len(ANSWER)
    page.reload()
    _connected(page, "reloader")
    log = page.get_by_role("log")
    agent = log.locator(AGENT)
    expect(agent).to_have_count(1)
    expect(agent).not_to_have_class(re.compile(r"\bpending\b"))
    assert _answer_text(page) == ANSWER
    assert log.inner_text().count(ANSWER) == 1
    expect(log.locator("article.user")).to_have_count(1)
    expect(log.locator("article.user")).to_have_text(re.compile("count for me"))


def test_stop_cancels_the_run_and_keeps_the_partial_text(slow_page, tokens) -> None:
    page = slow_page.page
    token = tokens("stopper")
    slow_page.open(token)
    _connected(page, "stopper")
    _send(page, "count for me")
    _wait_for_answer_longer_than(page, 10)
    page.get_by_role("button", name="Stop").click()
    agent = page.get_by_role("log").locator(AGENT).last
    expect(agent.locator(".note")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    partial = _answer_text(page)
    assert partial
    assert ANSWER.startswith(partial)
    assert len(partial) < len(ANSWER)
    thread_id = _view(page)["threadId"]
    stored = httpx.get(
        f"{slow_page.base_url}/api/threads/{thread_id}/messages",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["content"] == partial


def test_a_bad_token_is_explained_in_words(demo_page, tokens) -> None:
    page = demo_page.page
    demo_page.open(tokens("mallory", secret="not-the-gateway-secret-0123456789abcdef"))
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(
        re.compile(r"token was not accepted\. The token was rejected .*get a valid token")
    )
    expect(page.get_by_role("status")).to_have_text("Disconnected")
    expect(page.get_by_label("Token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('chatgate.token')") is None


def test_an_expired_token_is_explained_in_words(demo_page, tokens) -> None:
    page = demo_page.page
    demo_page.open(tokens("late", ttl_s=-60))
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"The token has expired\b.*What to do: get a fresh token, then reconnect\.$")
    )


def test_a_token_typed_in_the_field_connects(demo_page, tokens) -> None:
    page = demo_page.page
    demo_page.open()
    expect(page.get_by_role("status")).to_have_text("Not connected")
    page.get_by_label("Token").fill(tokens("typist"))
    page.get_by_role("button", name="Connect").click()
    _connected(page, "typist")
    expect(page.get_by_label("Token")).to_be_hidden()


def test_threads_are_listed_and_reopened_from_history(demo_page, tokens) -> None:
    page = demo_page.page
    demo_page.open(tokens("historian"))
    _connected(page, "historian")
    _send(page, "what is 2+3?")
    log = page.get_by_role("log")
    expect(log.locator(AGENT).last).to_contain_text("5")
    page.get_by_role("button", name="New thread").click()
    expect(log.locator("article")).to_have_count(0)
    _send(page, "what is 6*7?")
    expect(log.locator(AGENT).last).to_contain_text("42")
    threads = page.get_by_role("navigation", name="Threads").get_by_role("button")
    expect(threads).to_have_count(2)
    threads.last.click()
    expect(log.locator("article.user")).to_have_text([re.compile(r"what is 2\+3\?")])
    expect(log.locator(AGENT)).to_have_count(1)
    expect(log.locator(AGENT)).to_contain_text("5")


def test_loads_nothing_from_another_host(demo_page, tokens) -> None:
    demo_page.open(tokens("local"))
    _connected(demo_page.page, "local")
    own = [url for url in demo_page.requests if url.startswith(demo_page.base_url)]
    assert {url.removeprefix(demo_page.base_url) for url in own} >= {
        "/",
        "/static/page.css",
        "/static/page.js",
        "/static/chatgate.js",
    }
    assert demo_page.foreign_requests() == []


def test_a_server_restart_mid_answer_loses_and_repeats_nothing(browser_page, tokens, tmp_path):
    variables = {
        "ENVIRONMENT": "test",
        "CHATGATE_JWT_SECRET": SECRET,
        "CHATGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "CHATGATE_AGENT": "slow_agent:SlowAgent",
        "PYTHONPATH": str(Path(__file__).resolve().parent),
    }
    port = free_port()
    with server_process(tmp_path, port=port, **variables) as first:
        watched = browser_page(first.http_url)
        # While no server listens, Chromium logs each refused reconnection attempt.
        watched.allow_console_error(r"^WebSocket connection to .* net::ERR_CONNECTION_REFUSED$")
        page = watched.page
        watched.open(tokens("survivor"))
        _connected(page, "survivor")
        _send(page, "count for me")
        _wait_for_answer_longer_than(page, len(ANSWER) // 4)
        first.stop()
        expect(page.get_by_role("status")).to_have_text(re.compile("^Reconnecting: "))
    with server_process(tmp_path, port=port, **variables):
        _connected(page, "survivor")
        agent = page.get_by_role("log").locator(AGENT)
        expect(agent).to_have_count(1)
        expect(agent).not_to_have_class(re.compile(r"\bpending\b"))
        shown = _answer_text(page)
        assert ANSWER.startswith(shown)
        _send(page, "count again")
        expect(agent).to_have_count(2)
        expect(agent.last).not_to_have_class(re.compile(r"\bpending\b"))
        assert _answer_text(page) == ANSWER
