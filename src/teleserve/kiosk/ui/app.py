"""The touch UI's ASGI app (Starlette): the customer's screens, the demo panel when the
devices are simulated, and the static files.

It listens on loopback only, and still refuses a request whose ``Host`` is not a
loopback name (a page elsewhere rebinding a DNS name to 127.0.0.1) and a POST whose
``Origin`` is another site (a page elsewhere posting a form to the kiosk).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from teleserve.kiosk.ui import panel, screens
from teleserve.kiosk.ui.render import STATIC
from teleserve.kiosk.ui.state import KioskUi

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


class SameOriginPosts:
    """403 for a POST whose ``Origin`` header names another host (browsers send it
    with every form POST; a missing header is a non-browser client on loopback)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            if origin is not None and urlsplit(origin.decode("latin-1")).hostname not in (
                LOOPBACK_NAMES
            ):
                await PlainTextResponse("cross-origin request refused", 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(ui: KioskUi) -> Starlette:
    routes = [*screens.ROUTES, Mount("/static", StaticFiles(directory=STATIC), name="static")]
    if ui.panel is not None:
        routes[:0] = panel.ROUTES
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES)),
            Middleware(SameOriginPosts),
        ],
    )
    app.state.ui = ui
    return app
