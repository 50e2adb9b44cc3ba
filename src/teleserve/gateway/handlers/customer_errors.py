"""From the customers domain's errors to TSP/1 err_numbers (PROTOCOL.md "Errors",
docs/customer-auth.md "Errors").

The customers service raises one error per situation with a stable ``code``; the kiosk
needs the protocol's number and, for a lock or a throttle, ``details.retry_after_s``.
Anything not listed here is not a customer's business error: it propagates and the
dispatcher answers ``90001`` (logged, nothing kept).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from teleserve.core.errors import DomainError, Locked, RateLimited, ValidationError
from teleserve.gateway import errors
from teleserve.gateway.errors import TspError

# Error code of the customers service → TSP err_number.
_BY_CODE: Mapping[str, str] = {
    "customer_auth_failed": errors.AUTH_FAILED,
    "customer_locked": errors.CUSTOMER_LOCKED,
    "customer_session_expired": errors.CUSTOMER_SESSION_ENDED,
    "customer_level_required": errors.LEVEL_TOO_LOW,
    "customer_rate_limited": errors.TOO_MANY_REQUESTS,
}

# A ValidationError the field rules (10005) cannot catch beforehand → the request fields
# it concerns. Most cannot happen once ``gateway.fields`` passed the body; ``same_factor``
# (a second factor of the kind the session already has) can.
_FIELDS_BY_CODE: Mapping[str, list[str]] = {
    "same_factor": ["method"],
    "auth_method": ["method"],
    "secret_missing": ["secret"],
    "service_number_format": ["msisdn"],
    "face_match_score": ["face_match_score"],
    "id_card_missing": ["id_number", "id_name"],
}


def tsp_error(exc: DomainError) -> TspError | None:
    """The TSP refusal for a customers-domain error, or ``None`` when it is none of the
    customer's errors (a bug or an outage: the caller lets it propagate)."""
    code = _BY_CODE.get(exc.code)
    if code is None and isinstance(exc, Locked):
        code = errors.CUSTOMER_LOCKED
    if code is None and isinstance(exc, RateLimited):
        code = errors.TOO_MANY_REQUESTS
    if code is not None:
        details: dict[str, Any] = {}
        if code in (errors.CUSTOMER_LOCKED, errors.TOO_MANY_REQUESTS):
            details["retry_after_s"] = int(exc.params.get("retry_after_s", 1))
        return TspError(code, details)
    if isinstance(exc, ValidationError):
        return TspError(errors.INVALID_FIELDS, {"fields": _FIELDS_BY_CODE.get(exc.code, [])})
    return None


@contextmanager
def as_tsp() -> Iterator[None]:
    """Run a block of customers-service calls, turning their errors into ``TspError``."""
    try:
        yield
    except TspError:
        raise
    except DomainError as exc:
        mapped = tsp_error(exc)
        if mapped is None:
            raise
        raise mapped from exc
