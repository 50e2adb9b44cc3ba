"""The HTTP application: operational endpoints now; TMF APIs and the console mount here
in later issues.

- ``GET /healthz`` — liveness: the process answers.
- ``GET /readyz`` — readiness: the database answers and its schema is at the head
  migration (a load balancer must not send traffic to a server with an old schema).
- ``GET /metrics`` — Prometheus text format: request counts and latencies by route.
- ``/docs`` and ``/openapi.json`` — OpenAPI.
- ``POST /oauth/token`` — bearer tokens for API clients (``teleserve.iam.api``).
- ``/console/`` — the staff console (``teleserve.web.console``; ``/`` redirects there),
  ``/static/`` its CSS, scripts and vendored libraries.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import Engine, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import teleserve
from teleserve.catalog import api as catalog_api
from teleserve.core import migrate
from teleserve.core.errors import DomainError
from teleserve.core.i18n import normalize_locale
from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.customers import api as customers_api
from teleserve.iam.api import router as oauth_router
from teleserve.inventory import api as inventory_api
from teleserve.notify import api as notify_api
from teleserve.numbers import api as numbers_api
from teleserve.payments import api as payments_api
from teleserve.web.tmf import errors as tmf_errors

log = get_logger("teleserve.http")


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "teleserve_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "teleserve_http_request_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )


class MeasureRequests:
    """Counts and times every HTTP request by route, method and status.

    A plain ASGI middleware: ``@app.middleware("http")`` (Starlette's
    ``BaseHTTPMiddleware``) runs the rest of the app in a task of its own and passes the
    response through memory streams, which cost about a third of ``/healthz``'s server
    CPU. Here the status is read from the response's start message on its way out."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # As before: a request whose handler raises is not counted here (the server
        # error middleware outside answers 500 and logs it).
        await self.app(scope, receive, send_and_note_status)
        # The router puts the matched route into the (shared) scope on the way in.
        path = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        self.metrics.requests.labels(path, method, str(status)).inc()
        self.metrics.latency.labels(path, method).observe(time.perf_counter() - started)


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    app = FastAPI(
        title="Teleserve",
        version=teleserve.__version__,
        description="Customer-service and self-service platform for telecom operators.",
    )
    app.state.settings = settings
    app.state.engine = engine
    metrics = HttpMetrics()
    app.state.metrics = metrics
    head = migrate.head_revision(settings.database_url)

    app.add_middleware(MeasureRequests, metrics=metrics)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        locale = normalize_locale(request.headers.get("accept-language"))
        return JSONResponse(
            status_code=exc.status,
            content=tmf_errors.error_body(
                exc.status, exc.code, exc.render("en"), exc.render(locale)
            ),
            # RFC 6750 section 3: a 401 names the scheme the client should use.
            headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
        )

    tmf_errors.install(app)
    app.include_router(oauth_router)

    # -- staff console and its static files (teleserve.web.console, docs/console.md) --
    from pathlib import Path

    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from teleserve.web.console.app import create_console_app

    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # No mount name: the console's route names (``customer_360``...) resolve as they are.
    app.mount("/console", create_console_app(settings, engine))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    # -- end of the staff console block --
    # TM Forum Open APIs (each domain's api.py; conventions in teleserve.web.tmf).
    app.include_router(catalog_api.router)
    app.include_router(inventory_api.router)
    app.include_router(customers_api.router)
    app.include_router(payments_api.router)
    app.include_router(notify_api.router)
    app.include_router(numbers_api.router)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": teleserve.__version__}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = migrate.current_revision(engine)
        except Exception as exc:  # any database failure means "not ready"
            log.warning("readiness check failed", error=str(exc))
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "database": "unreachable"}
            )
        ready = current == head
        return JSONResponse(
            status_code=200 if ready else 503,
            content={
                "status": "ready" if ready else "migrations pending",
                "database": engine.dialect.name,
                "schema": current,
                "expected_schema": head,
            },
        )

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
