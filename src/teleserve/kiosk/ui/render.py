"""Screens from Jinja2 templates in the customer's language (``_`` in a template is
``translate`` bound to it), and the small helpers routes share."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from teleserve.core.i18n import DEFAULT_LOCALE, translate
from teleserve.kiosk.flows import mask_number
from teleserve.kiosk.ui.forms import money
from teleserve.kiosk.ui.state import KioskUi

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(money=money, mask=mask_number)


def ui_of(request: Request) -> KioskUi:
    ui: KioskUi = request.app.state.ui
    return ui


def render(
    request: Request,
    template: str,
    *,
    idle: bool = True,
    customer: bool = True,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``idle``: the screen runs the idle timer (every screen but home and out of
    service, which have no session to end unless the customer left state behind).
    ``customer`` False (the demo panel): neither the idle timer nor the customer's
    pending message, which stays for their screen."""
    ui = ui_of(request)
    session = ui.session
    locale = session.locale
    idle = customer and (idle or session.has_state(ui.agent))
    context.update(
        request=request,
        locale=locale,
        other_locale="en" if locale == DEFAULT_LOCALE else DEFAULT_LOCALE,
        _=partial(translate, locale=locale),
        path=request.url.path,
        flash=session.pop_flash() if customer else None,
        idle_ms=int(ui.settings.idle_timeout_s * 1000) if idle else 0,
        poll_ms=ui.settings.escrow_poll_ms,
        has_panel=ui.panel is not None,
    )
    body = _env.get_template(template).render(context)
    # No screen is cached: each holds a customer's state of the moment.
    return HTMLResponse(body, status, headers={"Cache-Control": "no-store"})


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None
