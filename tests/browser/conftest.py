"""Real headless Chromium (Debian's, never a downloaded one) against real gateway processes.

Without ``/usr/bin/chromium`` or Playwright the browser tests skip, except under
CI, where that is a failure. Every page records the requests it makes and the
console errors it logs; a test fails when one went to another host or one was
logged. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from chatgate.auth.minting import mint_token

from processes import ServerProcess, server_process
from support import SECRET

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
HERE = Path(__file__).resolve().parent
TIMEOUT_MS = 20_000


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need {why} when CI=true")
    pytest.skip(f"{why} is not available")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Playwright's sync API keeps an event loop running on the main thread while
    it is open: closed with the module, it leaves the asyncio tests that run
    after the browser tests a thread with no running loop.
    """
    if not CHROMIUM.exists():
        _unavailable(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        # Optional: a dev dependency that only these tests need.
        from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415
    except ImportError:
        _unavailable("Playwright for Python (pip install playwright)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _gateway(tmp_path: Path, **variables: str) -> Iterator[ServerProcess]:
    with server_process(
        tmp_path,
        ENVIRONMENT="test",
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'chat.db'}",
        **variables,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway with the demo agent."""
    yield from _gateway(tmp_path_factory.mktemp("demo"), CHATGATE_AGENT="demo")


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway with :class:`slow_agent.SlowAgent`, importable from this folder."""
    yield from _gateway(
        tmp_path_factory.mktemp("slow"),
        CHATGATE_AGENT="slow_agent:SlowAgent",
        PYTHONPATH=str(HERE),
    )


@dataclass
class Watched:
    """A page and what it did: every request URL, console errors, uncaught exceptions."""

    page: Any
    base_url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    allowed_errors: list[re.Pattern[str]] = field(default_factory=list)

    def open(self, token: str | None = None) -> None:
        self.page.goto(f"{self.base_url}/" + (f"#token={token}" if token else ""))

    def allow_console_error(self, pattern: str) -> None:
        """Let console errors matching ``pattern`` pass (the browser's own network errors)."""
        self.allowed_errors.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        """Console errors and uncaught exceptions no test allowed."""
        return [
            text
            for text in self.console_errors
            if not any(allowed.search(text) for allowed in self.allowed_errors)
        ]

    def foreign_requests(self) -> list[str]:
        own = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in {"data", "blob"} and urlsplit(url).netloc != own
        ]


def user_token(sub: str, ttl_s: int = 3600, secret: str = SECRET) -> str:
    """A user token; the test gateways accept it when signed with their ``SECRET``."""
    return mint_token(secret, sub, ttl_s=ttl_s)


@pytest.fixture
def tokens() -> Any:
    """:func:`user_token`, for the tests (a conftest is not imported by them)."""
    return user_token


def _artifact_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


@contextlib.contextmanager
def _watch(browser: Any, base_url: str, name: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    watched = Watched(page, base_url)
    page.on("request", lambda sent: watched.requests.append(sent.url))
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: watched.console_errors.append(f"uncaught: {error}"))
    try:
        yield watched
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()
    assert watched.foreign_requests() == []
    assert watched.unexpected_errors() == []


@pytest.fixture
def demo_page(
    browser: Any, demo_gateway: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[Watched]:
    """A fresh browser tab (own storage) on the demo gateway."""
    with _watch(browser, demo_gateway.http_url, _artifact_name(request)) as watched:
        yield watched


@pytest.fixture
def slow_page(
    browser: Any, slow_gateway: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[Watched]:
    """A fresh browser tab (own storage) on the slow agent's gateway."""
    with _watch(browser, slow_gateway.http_url, _artifact_name(request)) as watched:
        yield watched


@pytest.fixture
def browser_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: ``browser_page(base_url)`` opens a fresh tab for a gateway the test runs."""
    with contextlib.ExitStack() as stack:

        def open_tab(base_url: str) -> Watched:
            return stack.enter_context(_watch(browser, base_url, _artifact_name(request)))

        yield open_tab
