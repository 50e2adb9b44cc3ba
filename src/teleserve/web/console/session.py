"""The console session: a signed cookie (Starlette ``SessionMiddleware``, itsdangerous).

The cookie holds only what verifies cheaply on each request (DESIGN.md section 9):
the user id, the user's *session stamp* at login (``iam.service.current_session_stamp``;
a password, role, MFA or status change rotates it, which ends every older session at
once), when the session started and was last used, the CSRF token and the language.
Nothing secret is stored: the cookie is signed, not encrypted, so it must not be.

Lifetimes: a session ends after ``staff_session_idle_minutes`` without a request (30 by
default) and in any case ``staff_session_hours`` after login (12). Both are checked on the
server against the times stored in the signed cookie, with ``core.clock`` (tests freeze
it); the cookie's own ``Max-Age`` is only a backstop.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from teleserve.core.clock import utcnow
from teleserve.core.i18n import SUPPORTED_LOCALES, normalize_locale
from teleserve.core.settings import Settings

COOKIE = "teleserve_console"
LANG_COOKIE = "teleserve_lang"  # the language outlives a session (login page, after logout)
COOKIE_PATH = "/console"

_UID = "uid"
_STAMP = "stamp"
_STARTED = "started"
_SEEN = "seen"
_CSRF = "csrf"
_LOCALE = "locale"


@dataclass(frozen=True)
class SessionUser:
    user_id: str
    stamp: str


def _now() -> float:
    return utcnow().timestamp()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use (anonymous sessions get one too, so
    the login form itself is protected against login CSRF)."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


def check_csrf_token(request: Request, presented: str | None) -> bool:
    expected = request.session.get(_CSRF)
    if not isinstance(expected, str) or not expected or not presented:
        return False
    return secrets.compare_digest(expected.encode(), presented.encode())


def start(request: Request, user_id: str, stamp: str) -> None:
    """A fresh session for a user who just logged in: everything from the anonymous
    session is dropped but the language, and the CSRF token is new."""
    locale = request.session.get(_LOCALE)
    request.session.clear()
    now = _now()
    values = {_UID: user_id, _STAMP: stamp, _STARTED: now, _SEEN: now}
    for key, value in values.items():
        request.session[key] = value
    request.session[_CSRF] = secrets.token_urlsafe(32)
    if isinstance(locale, str):
        request.session[_LOCALE] = locale


def end(request: Request) -> None:
    """Log out: forget everything but the language."""
    locale = request.session.get(_LOCALE)
    request.session.clear()
    if isinstance(locale, str):
        request.session[_LOCALE] = locale


def current(request: Request, settings: Settings) -> tuple[SessionUser | None, bool]:
    """The logged-in user of this session, and whether a session just expired (idle or
    too old; it is ended here). Does not touch the database."""
    data: dict[str, Any] = request.session
    user_id, stamp = data.get(_UID), data.get(_STAMP)
    if not isinstance(user_id, str) or not isinstance(stamp, str):
        return None, False
    now = _now()
    started, seen = data.get(_STARTED), data.get(_SEEN)
    if not isinstance(started, int | float) or not isinstance(seen, int | float):
        end(request)
        return None, True
    idle = now - seen > settings.staff_session_idle_minutes * 60
    old = now - started > settings.staff_session_hours * 3600
    if idle or old:
        end(request)
        return None, True
    return SessionUser(user_id, stamp), False


def touch(request: Request) -> None:
    """Record a request: the idle timeout counts from here."""
    request.session[_SEEN] = _now()


def locale_of(request: Request, settings: Settings) -> str:
    """The session's language, else the language cookie, else the operator's default."""
    chosen = request.session.get(_LOCALE) or request.cookies.get(LANG_COOKIE)
    if isinstance(chosen, str) and chosen in SUPPORTED_LOCALES:
        return chosen
    return normalize_locale(settings.default_locale)


def set_locale(request: Request, locale: str) -> str:
    chosen = normalize_locale(locale)
    request.session[_LOCALE] = chosen
    return chosen
