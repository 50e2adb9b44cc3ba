"""The ``/console`` sub-application: session middleware, CSRF on every unsafe request,
error pages in the layout, and the routers of the console's pages.

A sub-application (rather than routes on the main app) keeps the console's HTML error
pages and cookies apart from the JSON errors of the TMF APIs and ``/oauth/token``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from teleserve.catalog.views import router as catalog_router
from teleserve.core.errors import DomainError
from teleserve.core.i18n import _
from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.customers.views import router as customers_router
from teleserve.iam.views import router as iam_router
from teleserve.numbers.views import router as numbers_router
from teleserve.payments.views import router as payments_router
from teleserve.reports.views import router as reports_router
from teleserve.terminals.views import router as terminals_router
from teleserve.web.console import routes, session
from teleserve.web.console.page import (
    EnrolmentRequired,
    LoginRequired,
    check_csrf,
    is_htmx,
    login_url,
    optional_actor,
)
from teleserve.web.console.templating import render

log = get_logger("teleserve.console")

# The console's pages: add a domain's ``views.router`` here.
ROUTERS = (
    routes.router,
    customers_router,
    catalog_router,
    numbers_router,
    iam_router,
    reports_router,
    terminals_router,
    payments_router,
)

_TITLES = {
    400: _("The request could not be understood"),
    401: _("Please log in"),
    403: _("Not allowed"),
    404: _("Page not found"),
    405: _("Not allowed"),
    409: _("Conflict"),
    422: _("Please check your input"),
    423: _("Locked"),
    429: _("Too many requests"),
    500: _("Something went wrong"),
    501: _("Not available yet"),
}


def _error_page(
    request: Request, status: int, message: str, params: dict[str, object] | None = None
) -> Response:
    actor = optional_actor(request)
    context = {
        "status": status,
        "title": _TITLES.get(status, _TITLES[400 if status < 500 else 500]),
        "message": message,
        "message_params": params or {},
    }
    template = "console/_error_fragment.html" if is_htmx(request) else "console/error.html"
    return render(request, template, context, actor=actor, status_code=status)


def _redirect(request: Request, url: str) -> Response:
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def create_console_app(settings: Settings, engine: Engine) -> FastAPI:
    console = FastAPI(
        title="Teleserve console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(check_csrf)],
    )
    console.state.settings = settings
    console.state.engine = engine
    console.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=session.COOKIE,
        max_age=settings.staff_session_hours * 3600,
        path=session.COOKIE_PATH,
        same_site="lax",
        # Production sends the cookie over TLS only (DESIGN.md: TLS off loopback).
        https_only=not settings.is_demo,
    )

    @console.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return _redirect(request, login_url(request, exc.next_path, exc.reason))

    @console.exception_handler(EnrolmentRequired)
    async def enrolment_required(request: Request, exc: EnrolmentRequired) -> Response:
        return _redirect(request, str(request.url_for("console_mfa_enrol").path))

    @console.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return _error_page(request, exc.status, exc.message, exc.params)

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_page(request, 404, _("No such page"))
        if exc.status_code == 405:
            return _error_page(request, 405, _("This page cannot be used that way"))
        return _error_page(request, exc.status_code, _("The request could not be understood"))

    @console.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        field = ".".join(str(p) for p in errors[0]["loc"][1:]) if errors else "?"
        return _error_page(request, 422, _("Invalid value for {field}"), {"field": field})

    @console.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("console page failed", path=request.url.path, error=repr(exc))
        return _error_page(request, 500, _("The error has been logged; please try again later"))

    for router in ROUTERS:
        console.include_router(router)
    return console
