"""Domain errors: a stable code, an English message id (translated at the edge), params,
and the HTTP status an API should answer with. Services raise these; nothing else is
expected to reach a user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import pydantic
from pydantic import BaseModel

from teleserve.core.i18n import _, translate

M = TypeVar("M", bound=BaseModel)


class DomainError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **params: Any) -> None:
        self.message = message
        self.code = code or self.default_code
        self.params = params
        super().__init__(self.render("en"))

    def render(self, locale: str | None = None) -> str:
        return translate(self.message, locale, **self.params)


class ValidationError(DomainError):
    """Input that can never be accepted as given (malformed, negative, unknown value)."""

    status = 422
    default_code = "invalid"


class NotFound(DomainError):
    """Absent, or outside the caller's organisation (the two are indistinguishable)."""

    status = 404
    default_code = "not_found"


class Conflict(DomainError):
    """The request contradicts current state (reused idempotency key, number taken...)."""

    status = 409
    default_code = "conflict"


class PermissionDenied(DomainError):
    status = 403
    default_code = "forbidden"


class AuthenticationFailed(DomainError):
    status = 401
    default_code = "unauthenticated"


class Locked(DomainError):
    """Locked for a while after repeated failures; unlocks by itself at ``until``."""

    status = 423
    default_code = "locked"


class RateLimited(DomainError):
    status = 429
    default_code = "rate_limited"


class NotAvailableYet(DomainError):
    """A capability a later release delivers: answered honestly, never stubbed."""

    status = 501
    default_code = "not_implemented"


def parse_input(model: type[M], value: M | Mapping[str, Any]) -> M:
    """``value`` as a ``model``: accepted as it is, or validated from a plain mapping. A
    shape error becomes a ``ValidationError`` naming the first bad field."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "?"
        raise ValidationError(
            _("Invalid value for {field}: {reason}"), field=field, reason=first["msg"]
        ) from None
