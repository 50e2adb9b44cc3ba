"""What a console page receives: the logged-in actor, a unit of work, a renderer.

``console_page`` is the dependency every page declares (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse

from teleserve.core.actor import Actor
from teleserve.core.clock import business_date, utcnow
from teleserve.core.errors import AuthenticationFailed, PermissionDenied
from teleserve.core.i18n import _, translate
from teleserve.core.settings import Settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.web.console import session
from teleserve.web.console.templating import render

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """No valid session: the console answers with a redirect to the login page."""

    def __init__(self, next_path: str, reason: str | None = None) -> None:
        super().__init__(reason or "login required")
        self.next_path = next_path
        self.reason = reason  # "expired" (idle/too old) or "ended" (stamp changed)


class EnrolmentRequired(Exception):
    """The user must enrol an authenticator before anything else."""


class CsrfRejected(PermissionDenied):
    default_code = "csrf_failed"


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def safe_next(value: str | None, default: str) -> str:
    """Only a path inside the console: never another site (open redirect)."""
    if (
        value
        and value.startswith(session.COOKIE_PATH + "/")
        and not any(c in value for c in ("\\", "\n", "\r"))
    ):
        return value
    return default


@dataclass
class ConsolePage:
    """The request as a page sees it."""

    request: Request
    actor: Actor
    locale: str
    engine: Engine

    def uow(self, *, readonly: bool = False) -> UnitOfWork:
        """A unit of work acting as the logged-in user (use ``with``; commit writes)."""
        return UnitOfWork(self.engine, self.actor, locale=self.locale, readonly=readonly)

    def t(self, message: str, **params: Any) -> str:
        """``message`` in the page's language."""
        return translate(message, self.locale, **params)

    @property
    def htmx(self) -> bool:
        return is_htmx(self.request)

    @property
    def zone(self) -> ZoneInfo:
        """The operator's time zone (pages show local times)."""
        return ZoneInfo(self.request.app.state.settings.timezone)

    def today(self) -> date:
        """The operator's business date now."""
        return business_date(utcnow(), self.request.app.state.settings.timezone)

    @property
    def local_cell(self) -> Callable[[datetime | None], datetime | None]:
        """A datetime as the naive local time an exported cell shows (None stays None)."""
        zone = self.zone
        return lambda value: value.astimezone(zone).replace(tzinfo=None) if value else None

    def render(
        self,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return render(
            self.request,
            template,
            context,
            actor=self.actor,
            status_code=status_code,
            headers=headers,
        )


def _next_of(request: Request) -> str:
    path = request.url.path
    if request.method == "GET" and not is_htmx(request):
        if request.url.query:
            path += "?" + request.url.query
        return path
    # After a POST or a fragment request, come back to the page the user was on.
    current = request.headers.get("HX-Current-URL", "")
    marker = current.find(session.COOKIE_PATH + "/")
    return current[marker:] if marker >= 0 else session.COOKIE_PATH + "/"


def _actor(request: Request, *, allow_enrolment: bool) -> Actor:
    settings = settings_of(request)
    user, expired = session.current(request, settings)
    if user is None:
        raise LoginRequired(_next_of(request), "expired" if expired else None)
    with UnitOfWork(engine_of(request), readonly=True) as uow:
        try:
            actor = iam.actor_for_user(uow, user.user_id, stamp=user.stamp)
        except AuthenticationFailed:
            # Password, roles, MFA or status changed since login, or the user was
            # deactivated: this session is over.
            session.end(request)
            raise LoginRequired(_next_of(request), "ended") from None
    if iam.is_enrolment_only(actor) and not allow_enrolment:
        raise EnrolmentRequired()
    session.touch(request)
    request.state.actor = actor
    return actor


def console_page(request: Request) -> ConsolePage:
    """The dependency of every console page: a logged-in user with a usable session."""
    actor = _actor(request, allow_enrolment=False)
    locale = session.locale_of(request, settings_of(request))
    return ConsolePage(request, actor, locale, engine_of(request))


def enrolment_page(request: Request) -> ConsolePage:
    """Like ``console_page``, but also for a user who may only enrol an authenticator."""
    actor = _actor(request, allow_enrolment=True)
    locale = session.locale_of(request, settings_of(request))
    return ConsolePage(request, actor, locale, engine_of(request))


def optional_actor(request: Request) -> Actor | None:
    """The logged-in actor if there is one, without redirecting (error pages use it to
    show the menu). Never raises."""
    actor = getattr(request.state, "actor", None)
    if isinstance(actor, Actor):
        return actor
    try:
        return _actor(request, allow_enrolment=False)
    except Exception:  # anonymous, expired, enrolment-only or database down: no menu
        return None


async def check_csrf(request: Request) -> None:
    """Every state-changing request carries the session's token (header or form field)."""
    if request.method not in UNSAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER)
    if not presented:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not session.check_csrf_token(request, presented):
        raise CsrfRejected(
            _("This form has expired or did not come from this site; reload the page and try again")
        )


def login_url(request: Request, next_path: str | None = None, reason: str | None = None) -> str:
    url = str(request.url_for("console_login").path)
    params = []
    if next_path:
        params.append("next=" + quote(next_path, safe="/"))
    if reason:
        params.append("reason=" + reason)
    return url + ("?" + "&".join(params) if params else "")
