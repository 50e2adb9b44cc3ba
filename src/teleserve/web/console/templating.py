"""Jinja2 for the console: one environment, the code's own translation catalogs.

Templates live in ``src/teleserve/web/templates/`` (``console/`` for the shell, one folder
per domain for its pages). They translate with ``{{ _("English text", name=value) }}``:
the same ``core.i18n.translate`` and ``.po`` catalogs as the Python code, so a test
extracts ``_()`` from templates with Babel's Jinja2 extractor and checks that every id has
its Chinese (``tests/core/test_i18n_catalogs.py``). Template strings belong to ``web.po``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

import teleserve
from teleserve.core.actor import Actor
from teleserve.core.i18n import translate
from teleserve.core.settings import Settings
from teleserve.web.console import session
from teleserve.web.console.nav import nav_for

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_PREFIX = "/static"

_CURRENCY_SYMBOLS = {"CNY": "¥"}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


ENV = _environment()


def money(fen: int | None, currency: str = "CNY") -> str:
    """Fen as the currency with two decimals: ``12345`` → ``¥123.45``, ``-5`` → ``-¥0.05``."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    symbol = _CURRENCY_SYMBOLS.get(currency, currency + " ")
    return f"{sign}{symbol}{yuan:,}.{cents:02d}"


def _local_time(settings: Settings) -> Callable[[datetime | date | None], str]:
    zone = ZoneInfo(settings.timezone)

    def local_time(value: datetime | date | None) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        return value.isoformat()

    return local_time


def translator(locale: str) -> Callable[..., str]:
    def _(message: str, **params: Any) -> str:
        return translate(message, locale, **params)

    return _


def base_context(request: Request, actor: Actor | None = None) -> dict[str, Any]:
    """What every console template may use (see the package docstring)."""
    settings: Settings = request.app.state.settings
    locale = session.locale_of(request, settings)
    token = session.csrf_token(request)

    def url(name: str, **params: Any) -> str:
        return str(request.url_for(name, **params).path)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)

    return {
        "request": request,
        "actor": actor,
        "nav": nav_for(actor, request) if actor is not None else [],
        "locale": locale,
        "other_locale": "en" if locale == "zh-CN" else "zh-CN",
        "_": translator(locale),
        "url": url,
        "csrf_token": token,
        "csrf_field": csrf_field,
        "static": lambda path: f"{STATIC_PREFIX}/{path}?v={teleserve.__version__}",
        "money": lambda fen: money(fen, settings.currency),
        "local_time": _local_time(settings),
        "current_path": request.url.path,
        "version": teleserve.__version__,
    }


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with the base context plus ``context`` (``context`` wins)."""
    if actor is None:
        actor = getattr(request.state, "actor", None)
    values = base_context(request, actor)
    values.update(context or {})
    html = ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
