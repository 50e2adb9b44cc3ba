"""Who is calling a TMF API: an API client with a bearer token (RFC 6750).

``tmf_reader`` / ``tmf_writer`` are FastAPI dependencies that yield a ``UnitOfWork``
acting as the token's API client, in the request's language (``Accept-Language``). The
token lookup is one indexed read of its SHA-256 (``iam.service.actor_for_token``): no
password hash per request. Permissions come from the token's scopes and are checked by
the services, which also scope every query to the client's organisation.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request

from teleserve.core.actor import Actor
from teleserve.core.errors import AuthenticationFailed
from teleserve.core.i18n import _, normalize_locale
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam


def request_locale(request: Request) -> str:
    return normalize_locale(request.headers.get("accept-language"))


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(_("A bearer access token is required"), code="missing_token")
    return token.strip()


def api_actor(request: Request) -> Actor:
    """The API client behind the request's bearer token (401 otherwise). Cached on the
    request so a handler and its dependencies resolve it once."""
    cached = getattr(request.state, "tmf_actor", None)
    if isinstance(cached, Actor):
        return cached
    token = _bearer_token(request)
    with UnitOfWork(request.app.state.engine, readonly=True) as uow:
        actor = iam.actor_for_token(uow, token)
    request.state.tmf_actor = actor
    return actor


def tmf_reader(request: Request) -> Iterator[UnitOfWork]:
    """A read-only unit of work for GET handlers."""
    actor = api_actor(request)
    with UnitOfWork(
        request.app.state.engine, actor, locale=request_locale(request), readonly=True
    ) as uow:
        yield uow


def tmf_writer(request: Request) -> Iterator[UnitOfWork]:
    """A unit of work for POST / PATCH / DELETE handlers; the handler commits."""
    actor = api_actor(request)
    with UnitOfWork(request.app.state.engine, actor, locale=request_locale(request)) as uow:
        yield uow
