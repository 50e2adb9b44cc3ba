"""TMF630 list requests: ``fields``, attribute filters, ``offset`` / ``limit``.

Filters are query parameters named by the resource's attribute path, optionally with an
operator suffix: ``status=active``, ``status=active,pending`` (any of),
``validFor.startDateTime.gte=2026-01-01T00:00:00Z``, ``name.ne=x``. Each router declares
which attribute paths it filters on and the service field each maps to; any other
parameter is refused with 400 (a filter that silently matched everything would mislead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import DEFAULT_LIMIT, Condition, ListQuery, Op

# Parameters with a meaning of their own, never filters. ``sort`` is accepted and ignored
# only in the sense that lists have one documented order (docs/tmf.md).
RESERVED = frozenset({"fields", "offset", "limit", "sort"})
_OPS = {op.value: op for op in Op}


class BadRequest(ValidationError):
    """A malformed request (TMF answers 400, not 422, for bad query parameters)."""

    status = 400
    default_code = "bad_request"


@dataclass(frozen=True)
class ListRequest:
    query: ListQuery
    fields: frozenset[str] | None


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(_("{name} must be an integer"), name=name) from None


def parse_fields(raw: str | None) -> frozenset[str] | None:
    if raw is None or raw.strip() == "":
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _split_operator(name: str) -> tuple[str, Op]:
    path, dot, suffix = name.rpartition(".")
    if dot and suffix in _OPS:
        return path, _OPS[suffix]
    return name, Op.eq


def parse_list_request(request: Request, filters: Mapping[str, str]) -> ListRequest:
    """``filters`` maps the TMF attribute paths a resource filters on to the service's
    field names."""
    conditions: list[Condition] = []
    for name in request.query_params:
        if name in RESERVED:
            continue
        path, op = _split_operator(name)
        field = filters.get(path)
        if field is None:
            raise BadRequest(
                _("Filtering by {field} is not supported"), code="unsupported_filter", field=path
            )
        values: list[str] = []
        for raw in request.query_params.getlist(name):
            values.extend(v for v in raw.split(",") if v != "")
        conditions.append(Condition(field, op, tuple(values)))
    offset = _int_param(request, "offset", 0)
    limit = _int_param(request, "limit", DEFAULT_LIMIT)
    try:
        query = ListQuery(tuple(conditions), offset, limit)
    except ValidationError as exc:
        raise BadRequest(exc.message, code=exc.code, **exc.params) from None
    return ListRequest(query, parse_fields(request.query_params.get("fields")))


# Always kept by a ``fields`` selection: what identifies and types a resource.
ALWAYS_KEPT = frozenset({"id", "href", "@type", "@baseType", "@schemaLocation"})


def project(resource: Mapping[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """The ``fields`` selection of one resource: the named top-level attributes (a dotted
    name selects its first segment) plus the identifying ones."""
    if fields is None:
        return dict(resource)
    wanted = {f.split(".", 1)[0] for f in fields} | ALWAYS_KEPT
    return {k: v for k, v in resource.items() if k in wanted}


def list_response(
    items: Sequence[Mapping[str, Any]], total: int, fields: frozenset[str] | None
) -> JSONResponse:
    """200 with the page and the TMF630 count headers."""
    body = [project(item, fields) for item in items]
    return JSONResponse(
        body,
        headers={"X-Total-Count": str(total), "X-Result-Count": str(len(body))},
    )
