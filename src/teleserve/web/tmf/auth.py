"""Who is calling a TMF API: an API client with a bearer token (RFC 6750).

``tmf_read`` runs a GET handler's work in a read-only ``UnitOfWork`` acting as the
token's API client, in the request's language (``Accept-Language``), in one trip to the
threadpool; ``tmf_writer`` is a FastAPI dependency that yields a writable one for POST /
PATCH / DELETE handlers. The token lookup is one indexed read of its SHA-256
(``iam.service.actor_for_token``): no password hash per request. Permissions come from
the token's scopes and are checked by the services, which also scope every query to the
client's organisation.

A reader looks the token up inside its own read-only transaction: one session, one pool
checkout (and on PostgreSQL one pre-ping) per GET instead of two — the separate lookup
was about a fifth of a GET's server CPU (BENCHMARKS.md, "TMF API over HTTP"). A writer
still looks it up in a read-only transaction of its own first, so a request with a bad
token never takes SQLite's write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.errors import AuthenticationFailed
from teleserve.core.i18n import _, normalize_locale
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam

T = TypeVar("T")


def request_locale(request: Request) -> str:
    return normalize_locale(request.headers.get("accept-language"))


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(_("A bearer access token is required"), code="missing_token")
    return token.strip()


# The actor of a reader's unit of work until its token is resolved, a few lines later:
# no permission and no organisation, so nothing could be read in its name by mistake.
_UNRESOLVED = Actor(ActorKind.api_client, "", org_path="\x00", name="unresolved")


def _actor_in(request: Request, uow: UnitOfWork) -> Actor:
    """The API client behind the request's bearer token, read through ``uow`` (401
    otherwise). Cached on the request so a handler and its dependencies resolve it once."""
    cached = getattr(request.state, "tmf_actor", None)
    if isinstance(cached, Actor):
        return cached
    actor = iam.actor_for_token(uow, _bearer_token(request))
    request.state.tmf_actor = actor
    return actor


def api_actor(request: Request) -> Actor:
    """The API client behind the request's bearer token (401 otherwise), looked up in a
    read-only unit of work of its own."""
    cached = getattr(request.state, "tmf_actor", None)
    if isinstance(cached, Actor):
        return cached
    _bearer_token(request)  # a missing token is refused before any database work
    with UnitOfWork(request.app.state.engine, readonly=True) as uow:
        return _actor_in(request, uow)


@contextmanager
def reading(request: Request) -> Iterator[UnitOfWork]:
    """A read-only unit of work acting as the request's API client (401 otherwise)."""
    _bearer_token(request)  # a missing token is refused before any database work
    with UnitOfWork(
        request.app.state.engine, _UNRESOLVED, locale=request_locale(request), readonly=True
    ) as uow:
        uow.actor = _actor_in(request, uow)
        yield uow


async def tmf_read(request: Request, work: Callable[[UnitOfWork], T]) -> T:
    """``work`` in a read-only unit of work acting as the token's API client, in one trip
    to the threadpool. A sync handler with a yielding dependency would make three (the
    dependency's set-up, the handler, the tear-down); each hand-off between the event
    loop and a worker thread costs CPU on both sides (BENCHMARKS.md, "TMF API over
    HTTP")."""

    def run() -> T:
        with reading(request) as uow:
            return work(uow)

    return await run_in_threadpool(run)


def tmf_writer(request: Request) -> Iterator[UnitOfWork]:
    """A unit of work for POST / PATCH / DELETE handlers; the handler commits."""
    actor = api_actor(request)
    with UnitOfWork(request.app.state.engine, actor, locale=request_locale(request)) as uow:
        yield uow
