"""List queries that every channel shares: attribute conditions, a page window, a page.

The TMF APIs (TMF630 filtering: ``status=active``, ``validFor.startDateTime.gt=...``,
``offset`` / ``limit``) and the console's lists both ask services for "the rows matching
these conditions, this window of them, and how many there are in all". Services accept
``ListQuery`` with conditions on *their own* field names and turn them into SQL with
``where_clauses`` and a table of the fields they allow; the edge (an API router, a console
view) maps its own names (TMF camelCase paths) to those field names. Filtering therefore
happens in the database, before paging, so ``X-Total-Count`` is the true total.

An unknown field or a value that does not parse is a ``ValidationError`` naming the field:
a filter that silently matched everything would be worse than a clear refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Op(StrEnum):
    eq = "eq"
    ne = "ne"
    gt = "gt"
    gte = "gte"
    lt = "lt"
    lte = "lte"


@dataclass(frozen=True)
class Condition:
    """``field op value``; several values mean any of them (``status=active,pending``)."""

    field: str
    op: Op
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListQuery:
    conditions: tuple[Condition, ...] = ()
    offset: int = 0
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValidationError(_("offset must be zero or more"), code="invalid_offset")
        if not 0 <= self.limit <= MAX_LIMIT:
            raise ValidationError(
                _("limit must be between 0 and {maximum}"),
                code="invalid_limit",
                maximum=MAX_LIMIT,
            )


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int


def parse_text(value: str) -> str:
    return value


def parse_int(value: str) -> int:
    return int(value)


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in {"true", "false"}:
        raise ValueError(value)
    return lowered == "true"


def parse_datetime(value: str) -> datetime:
    """ISO 8601; a value without an offset is taken as UTC (what the API documents)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FilterField:
    """How a service lets one of its fields be filtered: the SQL expression and how to
    read a value for it. ``ordered`` fields accept gt/gte/lt/lte."""

    column: Any
    parse: Callable[[str], Any] = parse_text
    ordered: bool = False
    ops: frozenset[Op] = field(default_factory=frozenset)

    def allowed(self, op: Op) -> bool:
        if self.ops:
            return op in self.ops
        return op in (Op.eq, Op.ne) or self.ordered


def _clause(column: Any, op: Op, value: Any) -> ColumnElement[bool]:
    match op:
        case Op.eq:
            return column == value  # type: ignore[no-any-return]
        case Op.ne:
            return column != value  # type: ignore[no-any-return]
        case Op.gt:
            return column > value  # type: ignore[no-any-return]
        case Op.gte:
            return column >= value  # type: ignore[no-any-return]
        case Op.lt:
            return column < value  # type: ignore[no-any-return]
        case Op.lte:
            return column <= value  # type: ignore[no-any-return]


def where_clauses(
    conditions: Sequence[Condition], fields: Mapping[str, FilterField]
) -> list[ColumnElement[bool]]:
    """SQL for ``conditions`` over the allowed ``fields``; refuses unknown fields,
    operators a field does not take, and values that do not parse."""
    clauses: list[ColumnElement[bool]] = []
    for condition in conditions:
        spec = fields.get(condition.field)
        if spec is None:
            raise ValidationError(
                _("Filtering by {field} is not supported"),
                code="unsupported_filter",
                field=condition.field,
            )
        if not spec.allowed(condition.op):
            raise ValidationError(
                _("The operator {op} cannot be used on {field}"),
                code="unsupported_filter",
                op=condition.op.value,
                field=condition.field,
            )
        try:
            values = [spec.parse(v) for v in condition.values]
        except (ValueError, TypeError, OverflowError):
            raise ValidationError(
                _("Invalid value for the filter {field}"),
                code="invalid_filter",
                field=condition.field,
            ) from None
        if not values:
            continue
        if condition.op is Op.ne:
            clauses.append(and_(*(_clause(spec.column, Op.ne, v) for v in values)))
        else:
            clauses.append(or_(*(_clause(spec.column, condition.op, v) for v in values)))
    return clauses


def fetch_page(
    session: Session,
    query: Any,
    list_query: ListQuery,
    *,
    order_by: Sequence[Any],
) -> tuple[list[Any], int]:
    """Run ``query`` (a Select already filtered) for one window and count all its rows.
    Returns the rows (ORM objects when the select has one entity) and the total."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows: list[Any] = []
    # An offset past the end is an empty page without asking the database (which would
    # also refuse an offset beyond its integer range: offset=2**63 is a valid request).
    if list_query.limit and list_query.offset < (total or 0):
        window = query.order_by(*order_by).offset(list_query.offset).limit(list_query.limit)
        result = session.execute(window)
        rows = list(result.scalars()) if len(window.column_descriptions) == 1 else list(result)
    return rows, int(total or 0)
