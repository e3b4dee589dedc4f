"""The chat page's HTTP side: when it is served, its files and its headers. No browser needed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chatgate.errors import ConfigError
from chatgate.settings import load_settings
from chatgate.web import routes
from chatgate.web.routes import STATIC, chat_page_enabled, content_security_policy

from processes import server_process
from support import SECRET

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "chatgate.js"
ASSETS = {
    "/static/page.js": "text/javascript; charset=utf-8",
    "/static/page.css": "text/css; charset=utf-8",
    "/static/chatgate.js": "text/javascript; charset=utf-8",
}


@pytest.mark.parametrize(
    ("environment", "flag", "served"),
    [
        ("development", None, True),
        ("test", None, True),
        ("staging", None, False),
        ("production", None, False),
        ("production", True, True),
        ("staging", True, True),
        ("development", False, False),
    ],
)
def test_the_page_follows_the_tier_unless_the_flag_says(environment, flag, served) -> None:
    overrides = {"environment": environment, "jwt_secret": SECRET}
    if flag is not None:
        overrides["chat_page"] = flag
    assert chat_page_enabled(load_settings(**overrides)) is served


def test_the_policy_names_only_this_host() -> None:
    policy = content_security_policy("chat.example.com:8443")
    assert "connect-src 'self' ws://chat.example.com:8443 wss://chat.example.com:8443;" in policy
    assert "script-src 'self';" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "ws: wss:" in content_security_policy("evil; script-src *")


def test_the_client_file_is_the_js_client() -> None:
    served = STATIC / "chatgate.js"
    if served.is_symlink():
        assert served.resolve() == CLIENT.resolve()
    assert served.read_bytes() == CLIENT.read_bytes()


def test_the_page_and_its_files_with_their_headers(tmp_path) -> None:
    with server_process(
        tmp_path, ENVIRONMENT="test", CHATGATE_JWT_SECRET=SECRET, CHATGATE_DATABASE_URL="memory://"
    ) as server:
        page = httpx.get(f"{server.http_url}/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        policy = page.headers["content-security-policy"]
        assert policy == content_security_policy(f"127.0.0.1:{server.port}")
        assert 'role="log"' in page.text
        assert "<script>" not in page.text
        assert "style=" not in page.text
        for path, media_type in ASSETS.items():
            asset = httpx.get(f"{server.http_url}{path}")
            assert asset.status_code == 200, path
            assert asset.headers["content-type"] == media_type
            assert asset.headers["x-content-type-options"] == "nosniff"
            again = httpx.get(
                f"{server.http_url}{path}", headers={"If-None-Match": asset.headers["etag"]}
            )
            assert again.status_code == 304
        for missing in ("/static/index.html", "/static/nothing.js", "/static/..%2Fapi.py"):
            assert httpx.get(f"{server.http_url}{missing}").status_code == 404, missing


@pytest.mark.parametrize(("flag", "status"), [(None, 404), ("1", 200)])
def test_production_serves_the_page_only_when_asked(tmp_path, flag, status) -> None:
    variables = {"CHATGATE_CHAT_PAGE": flag} if flag else {}
    with server_process(
        tmp_path,
        ENVIRONMENT="production",
        CHATGATE_JWT_SECRET=SECRET,
        CHATGATE_DATABASE_URL="memory://",
        **variables,
    ) as server:
        assert httpx.get(f"{server.http_url}/").status_code == status
        assert httpx.get(f"{server.http_url}/static/page.js").status_code == status


def test_a_missing_file_is_named_at_boot(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(routes, "STATIC", tmp_path)
    with pytest.raises(ConfigError) as raised:
        routes.ChatPage()
    assert raised.value.variable == "CHATGATE_CHAT_PAGE"
    assert "cannot be read" in raised.value.problem
