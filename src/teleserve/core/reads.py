"""``fetch``: a hot path's query, with less Python on SQLite.

Why: ``conn.execute(select ...)`` costs SQLAlchemy ~60–100 µs of Python a statement on
the 2-core VM (cache key, execution context, events, result set-up) — more than SQLite
takes to run a primary-key lookup. A kiosk money batch runs about ten; at 1,000
terminals × 1/s the batches are small, so that fixed cost per batch is most of what a
payment waits for (BENCHMARKS.md, "Kiosk load", session 6). Here a statement is compiled
once, its parameters go to the driver's cursor as a tuple, and rows come back as named
tuples with SQLAlchemy's own result processing (JSON, date-times) where a column needs it.

Only for statements built once (module constants, ``PerDialect``): compiled forms are
kept by the statement's identity (``core.db.StatementCache``).
PostgreSQL, a connection outside a transaction, and statements this path does not cover
go through ``conn.execute`` unchanged.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from teleserve.core.db import StatementCache, driver_cursor

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positions: tuple[str, ...]
    processors: tuple[Processor, ...]
    fixed: Mapping[str, Any]  # values bound in the statement itself
    expanding: frozenset[str]  # IN lists, expanded at each call
    row: Any  # the named tuple class of a result row
    results: tuple[Processor, ...] | None  # None: no column needs processing


# Each statement's plan, or None for one that needs SQLAlchemy.
_PLANS: StatementCache[_Plan | None] = StatementCache(limit=256)


def fetch(
    conn: Connection, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[Any]:
    """``list(conn.execute(statement, params))``: the rows, by attribute and position."""
    params = params or {}
    if conn.dialect.name != "sqlite" or not conn.in_transaction():
        return list(conn.execute(statement, params))
    plan = _PLANS.get(statement, lambda: _compile(conn, statement))
    if plan is None:
        return list(conn.execute(statement, params))
    sql = plan.sql
    values: list[Any] = []
    for name, processor in zip(plan.positions, plan.processors, strict=True):
        value = params[name] if name in params else plan.fixed[name]
        if name in plan.expanding:
            items = list(value)
            if not items:  # SQLAlchemy renders an empty IN as an expression of its own
                return list(conn.execute(statement, params))
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * len(items)), 1)
            values.extend(items if processor is None else map(processor, items))
        else:
            values.append(value if processor is None else processor(value))
    with driver_cursor(conn, sql, values) as cursor:
        cursor.execute(sql, values)
        raw = cursor.fetchall()
    make = plan.row._make
    if plan.results is None:
        return list(map(make, raw))
    results = plan.results
    return [
        make([v if p is None else p(v) for v, p in zip(row, results, strict=True)]) for row in raw
    ]


def _compile(conn: Connection, statement: Executable) -> _Plan | None:
    dialect = conn.dialect
    compiled = cast(ClauseElement, statement).compile(dialect=dialect)
    plan: _Plan | None = None
    positions = compiled.positiontup if isinstance(compiled, SQLCompiler) else None
    if (
        isinstance(compiled, SQLCompiler)
        and positions is not None
        and compiled._result_columns
        and not compiled.literal_execute_params
        and not compiled.escaped_bind_names
    ):
        binds = compiled.binds
        expanding = frozenset(b.key for b in compiled.post_compile_params)
        if all(binds[name].expanding == (name in expanding) for name in positions):
            columns = compiled._result_columns
            results = tuple(
                column.type._cached_result_processor(dialect, None) for column in columns
            )
            plan = _Plan(
                sql=compiled.string,
                positions=tuple(positions),
                processors=tuple(
                    binds[name].type._cached_bind_processor(dialect) for name in positions
                ),
                fixed={name: binds[name].effective_value for name in positions},
                expanding=expanding,
                row=namedtuple("Row", [c.keyname for c in columns], rename=True),
                results=results if any(p is not None for p in results) else None,
            )
    return plan
