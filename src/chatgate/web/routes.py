"""The chat page (docs/protocol.md section 9): ``GET /`` and the files it loads from ``/static/``.

The page is on in the development and test tiers and off (404) in staging and
production unless ``CHATGATE_CHAT_PAGE=1``; ``CHATGATE_CHAT_PAGE=0`` turns it off
anywhere. Everything it needs comes from this origin, and its Content Security
Policy says so: no inline script or style, no other host, no framing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from chatgate.errors import ConfigError
from chatgate.settings import Settings
from chatgate.tiers import Tier

STATIC = Path(__file__).parent / "static"

_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    # A symlink to clients/js/chatgate.js in a checkout; a copy in a built wheel.
    "chatgate.js": "text/javascript; charset=utf-8",
}
_PAGE = "index.html"
_PAGE_TIERS = frozenset({Tier.DEVELOPMENT, Tier.TEST})
# A Host header is validated by the HTTP parser; this keeps anything that could
# end a CSP directive out of the policy all the same.
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Small files that change with each release: revalidated by ETag every time.
    "Cache-Control": "no-cache",
}


def chat_page_enabled(settings: Settings) -> bool:
    """Whether ``/`` serves the chat page: ``CHATGATE_CHAT_PAGE`` when set, else the tier."""
    if settings.chat_page is not None:
        return settings.chat_page
    return settings.tier_decision.tier in _PAGE_TIERS


def content_security_policy(host: str) -> str:
    """The page's policy: this origin only; the socket on this host (ws: or wss:)."""
    sockets = f"ws://{host} wss://{host}" if _SAFE_HOST.match(host) else "ws: wss:"
    return (
        "default-src 'none'; "
        "script-src 'self'; "
        "style-src 'self'; "
        "img-src 'self' data:; "
        f"connect-src 'self' {sockets}; "
        "base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    )


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the page, read once at startup."""

    body: bytes
    media_type: str
    etag: str

    @classmethod
    def load(cls, name: str) -> Asset:
        """Read ``name`` from the static folder.

        Raises:
            ConfigError: the file is missing (an install without the package data, or an
                image that copied the ``chatgate.js`` symlink without its target).
        """
        try:
            body = (STATIC / name).read_bytes()
        except OSError as exc:
            raise ConfigError(
                "CHATGATE_CHAT_PAGE",
                f"the page's file {name} cannot be read ({exc.strerror}); "
                "reinstall chatgate, or set CHATGATE_CHAT_PAGE=0",
            ) from None
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, _MEDIA_TYPES[name], f'"{digest}"')


class ChatPage:
    """The page and its assets, served with the security headers.

    Raises:
        ConfigError: a file of the page is missing.
    """

    def __init__(self) -> None:
        self.assets = {name: Asset.load(name) for name in _MEDIA_TYPES}

    def _serve(self, request: Request, asset: Asset) -> Response:
        headers = {
            **_SECURITY_HEADERS,
            "ETag": asset.etag,
            "Content-Security-Policy": content_security_policy(request.url.netloc),
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    async def page(self, request: Request) -> Response:
        """``GET /``: the chat page."""
        return self._serve(request, self.assets[_PAGE])

    async def static(self, request: Request) -> Response:
        """``GET /static/{name}``: one of the page's own files; 404 for any other name."""
        asset = self.assets.get(request.path_params["name"])
        if asset is None or request.path_params["name"] == _PAGE:
            return PlainTextResponse("not found", status_code=404, headers=_SECURITY_HEADERS)
        return self._serve(request, asset)


def page_routes(settings: Settings) -> list[BaseRoute]:
    """The chat page's routes, or none when the page is off (``/`` is then a 404).

    Raises:
        ConfigError: the page is on and one of its files is missing.
    """
    if not chat_page_enabled(settings):
        return []
    page = ChatPage()
    return [
        Route("/", page.page, methods=["GET", "HEAD"]),
        Route("/static/{name}", page.static, methods=["GET", "HEAD"]),
    ]
