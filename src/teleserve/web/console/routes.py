"""The shell's own pages: login (password, then a TOTP code for MFA users), logout,
authenticator enrolment, the language switch, the home page and "not available yet".

Login in two steps without keeping the password anywhere: ``iam.service.authenticate``
answers ``mfa_required`` when the password is right but a code is missing. The form then
shows its code field and is submitted again with username, password and code. With htmx
only the code field is swapped in (the password stays in the browser's form); without
JavaScript the page comes back with the code field and the password must be typed again.
The server never stores the password between the steps.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from teleserve.core.actor import SYSTEM
from teleserve.core.errors import AuthenticationFailed, DomainError, NotFound, ValidationError
from teleserve.core.i18n import SUPPORTED_LOCALES, _
from teleserve.core.throttle import Rate, get_throttle
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.iam.schemas import MfaEnrolment
from teleserve.web.console import session
from teleserve.web.console.nav import NAV_BY_KEY, visible_items
from teleserve.web.console.page import (
    ConsolePage,
    console_page,
    engine_of,
    enrolment_page,
    is_htmx,
    safe_next,
    settings_of,
)
from teleserve.web.console.templating import render

router = APIRouter()

# Per client address, on top of the per-account lockout in iam (which cannot count
# attempts at usernames that do not exist).
LOGIN_RATE = Rate(30, 60)

_REASONS = {
    "expired": _("Your session timed out; please log in again"),
    "ended": _("Your session has ended; please log in again"),
    "logged_out": _("You have logged out"),
    "enrolled": _("Your authenticator is set up; log in with a code from it"),
}

_FIELD_MAX = 200


def _home(request: Request) -> str:
    return str(request.url_for("console_home").path)


def _redirect(request: Request, url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


@router.get("/", name="console_home")
def home(page: ConsolePage = Depends(console_page)) -> Response:
    # Managers, finance, auditors and administrators start from the dashboard (reports).
    if page.actor.can("reports.read"):
        return RedirectResponse(str(page.request.url_for("dashboard").path), status_code=303)
    return page.render("console/home.html", {"can_search": page.actor.can("customers.read")})


@router.get("/soon/{key}", name="console_soon")
def soon(key: str, page: ConsolePage = Depends(console_page)) -> Response:
    """An honest page for a menu entry a later release delivers."""
    item = NAV_BY_KEY.get(key)
    if item is None or item not in visible_items(page.actor) or item.route is not None:
        raise NotFound(_("No such page"))
    return page.render("console/soon.html", {"item": item})


# -- login -----------------------------------------------------------------------------


def _login_page(
    request: Request,
    step: dict[str, str],
    *,
    message: str | None = None,
    params: dict[str, object] | None = None,
    error: bool = False,
    need_code: bool = False,
    status_code: int = 200,
) -> Response:
    context = {
        **step,
        "message": message,
        "message_params": params or {},
        "error": error,
        "need_code": need_code,
    }
    if is_htmx(request):
        # The form stays; only its messages and the code field are replaced. htmx swaps
        # 2xx answers only, so a refusal is a 200 here (the full page keeps its status).
        return render(request, "console/_login_step.html", context)
    return render(request, "console/login.html", context, status_code=status_code)


@router.get("/login", name="console_login")
def login_form(
    request: Request,
    next: Annotated[str | None, Query(max_length=_FIELD_MAX)] = None,
    reason: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    next_path = safe_next(next, _home(request))
    user, _expired = session.current(request, settings_of(request))
    if user is not None:
        return RedirectResponse(next_path, status_code=303)
    step = {"next_path": next_path, "username": ""}
    return _login_page(request, step, message=_REASONS.get(reason or ""))


def _client_key(request: Request) -> str:
    host = request.client.host if request.client else "unknown"
    return f"console-login:{host}"


@router.post("/login", name="console_login_submit")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=_FIELD_MAX)] = "",
    password: Annotated[str, Form(max_length=_FIELD_MAX)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=_FIELD_MAX)] = "",
) -> Response:
    step = {"next_path": safe_next(next, _home(request)), "username": username.strip()}
    if not username.strip() or not password:
        return _login_page(
            request,
            step,
            message=_("Enter your username and password"),
            error=True,
            need_code=bool(code),
            status_code=422,
        )
    try:
        get_throttle().enforce(_client_key(request), LOGIN_RATE)
        with UnitOfWork(engine_of(request), SYSTEM) as uow:
            actor = iam.authenticate(uow, username, password, code.strip() or None)
            stamp = iam.current_session_stamp(uow, actor.id)
            uow.commit()
    except AuthenticationFailed as exc:
        need_code = exc.code in ("mfa_required", "mfa_invalid")
        return _login_page(
            request,
            step,
            message=exc.message,
            params=exc.params,
            error=exc.code != "mfa_required",
            need_code=need_code,
            status_code=401,
        )
    except DomainError as exc:  # Locked (with the time it lifts), RateLimited
        return _login_page(
            request,
            step,
            message=exc.message,
            params=exc.params,
            error=True,
            status_code=exc.status,
        )
    session.start(request, actor.id, stamp)
    if iam.is_enrolment_only(actor):
        return _redirect(request, str(request.url_for("console_mfa_enrol").path))
    return _redirect(request, step["next_path"])


@router.post("/logout", name="console_logout")
def logout(request: Request) -> Response:
    session.end(request)
    return _redirect(request, str(request.url_for("console_login").path) + "?reason=logged_out")


# -- MFA enrolment ---------------------------------------------------------------------


@router.get("/mfa/enrol", name="console_mfa_enrol")
def enrol_start_page(page: ConsolePage = Depends(enrolment_page)) -> Response:
    return page.render("console/enrol.html", {"enrolment": None, "message": None})


@router.post("/mfa/enrol", name="console_mfa_enrol_begin")
def enrol_begin(page: ConsolePage = Depends(enrolment_page)) -> Response:
    with page.uow() as uow:
        enrolment = iam.begin_mfa_enrolment(uow, page.actor.id)
        uow.commit()
    return page.render("console/enrol.html", {"enrolment": enrolment, "message": None})


@router.post("/mfa/confirm", name="console_mfa_confirm")
def enrol_confirm(
    page: ConsolePage = Depends(enrolment_page),
    code: Annotated[str, Form(max_length=20)] = "",
    secret: Annotated[str, Form(max_length=100)] = "",
    uri: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            iam.confirm_mfa_enrolment(uow, page.actor.id, code.strip())
            uow.commit()
    except ValidationError as exc:
        # The pending secret is still the one shown: show it again (it came from this
        # user's own page; the confirmation checks the stored one).
        shown = MfaEnrolment(secret, uri) if secret and uri else None
        return page.render(
            "console/enrol.html",
            {"enrolment": shown, "message": exc.render(page.locale)},
            status_code=422,
        )
    # Enrolling rotated the session stamp: every session of the user, this one too, ends.
    session.end(page.request)
    url = str(page.request.url_for("console_login").path) + "?reason=enrolled"
    return _redirect(page.request, url)


# -- language --------------------------------------------------------------------------


@router.post("/language", name="console_language")
def switch_language(
    request: Request,
    locale: Annotated[str, Form(max_length=10)] = "",
    next: Annotated[str, Form(max_length=_FIELD_MAX)] = "",
) -> Response:
    if locale not in SUPPORTED_LOCALES:
        raise ValidationError(_("Unknown language {locale}"), locale=locale[:10])
    chosen = session.set_locale(request, locale)
    response = RedirectResponse(safe_next(next, _home(request)), status_code=303)
    response.set_cookie(
        session.LANG_COOKIE,
        chosen,
        max_age=365 * 86400,
        path=session.COOKIE_PATH,
        samesite="lax",
        httponly=True,
        secure=not settings_of(request).is_demo,
    )
    return response
