"""Use cases of the number pool 号码资源 (DESIGN.md section 3): the only code that changes
its state.

Life of a number (the moves are ``TRANSITIONS`` below)::

    free ─reserve─▶ reserved ─assign─▶ assigned ─release─▶ quarantine ─90 days─▶ free
    reserved ─renew (same holder)─▶ reserved     reserved ─cancel / lapse─▶ free
    free ─assign_direct (numbers.admin)─▶ assigned

Every change is one conditional ``UPDATE … WHERE <the row is in a source state>`` decided
by its row count (never by a read followed by a write), so two callers racing for one
number cannot both win: on PostgreSQL the loser waits on the row lock and re-evaluates
the condition against the committed row; on SQLite writers are serialised by ``BEGIN IMMEDIATE``.

A reservation or quarantine whose time is up counts as ``free`` immediately — in searches,
counts, reads and in the conditions of the updates — and ``release_expired`` /
``release_quarantined`` (the worker's sweeps) later rewrite the stored rows.

一证五号: ``assign`` first upserts the ID card's row in ``number_id_card`` — which row-locks
it until commit — and only then counts the card's assigned numbers. Assignments to one
card therefore queue behind each other on PostgreSQL (READ COMMITTED: each sees the
previous one's committed count), while different cards never wait for each other.

``assign`` is a batch of one through ``assign_batch`` (the seed assigns tens of thousands
at once): the same checks, statements per batch instead of per number, cards and then
numbers locked in sorted order, so batches and single assignments never deadlock.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Row,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from teleserve.core.clock import as_utc, utcnow
from teleserve.core.db import execute_many, in_list
from teleserve.core.errors import Conflict, DomainError, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.masking import mask_phone
from teleserve.core.query import (
    Condition,
    FilterField,
    ListQuery,
    Op,
    fetch_page,
    parse_datetime,
    where_clauses,
)
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import rules
from teleserve.numbers.models import (
    IdCardLock,
    NumberGrade,
    NumberKind,
    NumberRange,
    NumberStatus,
    PoolNumber,
)
from teleserve.numbers.rules import parse_number
from teleserve.numbers.schemas import AssignItem as AssignItem  # callers build items from here
from teleserve.numbers.schemas import GradeOut, NumberOut, PoolOut, RangeOut, SweepOut

NUMBERS = cast(Table, PoolNumber.__table__)
GRADES = cast(Table, NumberGrade.__table__)
ID_CARDS = cast(Table, IdCardLock.__table__)

MAX_RANGE_SIZE = 100_000
INSERT_BATCH = 5_000
MAX_RESERVATION_MINUTES = 7 * 24 * 60
MAX_SEARCH = 100
MAX_PREFIX_DIGITS = 15
MAX_SUFFIX_DIGITS = 8
MAX_STORED_DIGITS = 16  # pool_number.value
# Values per IN list when a batch reads numbers or cards: well under the bound-parameter
# limits (SQLite 32,766, PostgreSQL 65,535).
LOOKUP_BATCH = 2_000

_ORG_PATH = re.compile(r"/(?:[^/\s]+/)*")
_ID_INDEX = re.compile(r"[0-9a-f]{64}")  # hex HMAC-SHA256 from crypto.blind_index
_GRADE_CODE = re.compile(r"[a-z0-9_]{1,32}")

FREE, RESERVED, ASSIGNED, QUARANTINE = (
    NumberStatus.free,
    NumberStatus.reserved,
    NumberStatus.assigned,
    NumberStatus.quarantine,
)


# -- the state machine -------------------------------------------------------------------


class Event(StrEnum):
    reserve = "reserve"
    renew = "renew"  # the holder reserves again: the expiry moves
    cancel = "cancel"  # the holder gives the number back before assignment
    assign = "assign"  # from the holder's own live reservation
    assign_direct = "assign_direct"  # from free, staff with numbers.admin only
    release = "release"  # the line is gone: the number rests in quarantine 冷冻期


# The one table of allowed moves, by *effective* source state (a lapsed reservation or an
# ended quarantine is free). Guards (same holder, admin) are added where the event is used.
TRANSITIONS: dict[Event, tuple[frozenset[NumberStatus], NumberStatus]] = {
    Event.reserve: (frozenset({FREE}), RESERVED),
    Event.renew: (frozenset({RESERVED}), RESERVED),
    Event.cancel: (frozenset({RESERVED}), FREE),
    Event.assign: (frozenset({RESERVED}), ASSIGNED),
    Event.assign_direct: (frozenset({FREE}), ASSIGNED),
    Event.release: (frozenset({ASSIGNED}), QUARANTINE),
}


def in_state(status: NumberStatus, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """SQL: the row's effective state is ``status`` at ``now`` (a time, or an SQL
    expression of one — see ``_write_assignments``)."""
    t = NUMBERS.c
    if status is FREE:
        return or_(
            t.status == FREE,
            and_(t.status == RESERVED, t.reserved_until <= now),
            and_(t.status == QUARANTINE, t.quarantine_until <= now),
        )
    if status is RESERVED:
        return and_(t.status == RESERVED, t.reserved_until > now)
    if status is QUARANTINE:
        return and_(t.status == QUARANTINE, t.quarantine_until > now)
    return t.status == status


def effective_status(row: Any, now: datetime) -> NumberStatus:
    """Python twin of ``in_state`` for a row already read."""
    status = NumberStatus(row.status)
    if status is RESERVED and row.reserved_until is not None:
        return RESERVED if as_utc(row.reserved_until) > now else FREE
    if status is QUARANTINE and row.quarantine_until is not None:
        return QUARANTINE if as_utc(row.quarantine_until) > now else FREE
    return status


def _leaving(event: Event, now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    sources, _target = TRANSITIONS[event]
    return or_(*(in_state(s, now) for s in sorted(sources)))


def _effective_sql(now: datetime) -> ColumnElement[str]:
    t = NUMBERS.c
    return case(
        (and_(t.status == RESERVED, t.reserved_until <= now), literal(FREE.value)),
        (and_(t.status == QUARANTINE, t.quarantine_until <= now), literal(FREE.value)),
        else_=t.status,
    )


def _move(
    uow: UnitOfWork,
    value: str,
    target: NumberStatus,
    condition: ColumnElement[bool],
    now: datetime,
    **values: Any,
) -> Row[Any] | None:
    """Move one visible number to ``target`` iff ``condition`` holds; the new row or None."""
    statement = (
        update(NUMBERS)
        .where(NUMBERS.c.value == value, uow.actor.scope(NUMBERS.c.org_path), condition)
        .values(status=target, updated_at=now, **values)
        .returning(*NUMBERS.c)
    )
    return uow.connection.execute(statement).first()


def _target(*events: Event) -> NumberStatus:
    targets = {TRANSITIONS[e][1] for e in events}
    assert len(targets) == 1, "events combined in one UPDATE must share their target"
    return targets.pop()


# -- input checks ------------------------------------------------------------------------


def _number(raw: str) -> str:
    return parse_number(raw).value


def _check_holder(holder: str) -> str:
    if (
        not isinstance(holder, str)
        or not 1 <= len(holder) <= 100
        or not holder.isprintable()
        or holder.split() != [holder]  # whitespace anywhere (one C call, not one per char)
    ):
        raise ValidationError(_("Invalid reservation holder"))
    return holder


def _check_org_path(org_path: str) -> str:
    if not isinstance(org_path, str) or len(org_path) > 255 or not _ORG_PATH.fullmatch(org_path):
        raise ValidationError(_("Invalid organisation path {org_path}"), org_path=org_path)
    return org_path


def _check_id_index(id_index: str) -> str:
    if not isinstance(id_index, str) or not _ID_INDEX.fullmatch(id_index):
        raise ValidationError(
            _("Invalid ID card index: pass the blind index of the ID number, not the number")
        )
    return id_index


def _check_customer(customer_id: str, subscription_ref: str | None) -> None:
    if not isinstance(customer_id, str) or not 1 <= len(customer_id) <= 32:
        raise ValidationError(_("A customer id of 1 to 32 characters is required"))
    if subscription_ref is not None and (
        not isinstance(subscription_ref, str) or not 1 <= len(subscription_ref) <= 64
    ):
        raise ValidationError(_("A subscription reference has 1 to 64 characters"))


def _reservation_minutes(minutes: int | None) -> int:
    if minutes is None:
        return get_settings().number_reservation_minutes
    whole = isinstance(minutes, int) and not isinstance(minutes, bool)
    if not whole or not 1 <= minutes <= MAX_RESERVATION_MINUTES:
        raise ValidationError(
            _("Reservation minutes must be between 1 and {max}"), max=MAX_RESERVATION_MINUTES
        )
    return minutes


def _fee(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(_("Fees are whole fen, zero or more"))
    return value


# -- reads -------------------------------------------------------------------------------


def _view_query() -> Any:
    joined = NUMBERS.outerjoin(GRADES, GRADES.c.code == NUMBERS.c.grade_code)
    return select(
        NUMBERS,
        func.coalesce(GRADES.c.premium_fee, 0).label("premium_fee"),
        func.coalesce(GRADES.c.min_plan_fee, 0).label("min_plan_fee"),
    ).select_from(joined)


def _to_view(row: Any, now: datetime) -> NumberOut:
    status = effective_status(row, now)
    lapsed = status is FREE and row.status != FREE
    return NumberOut(
        value=row.value,
        kind=NumberKind(row.kind),
        org_path=row.org_path,
        status=status,
        grade_code=row.grade_code,
        premium_fee=int(row.premium_fee),
        min_plan_fee=int(row.min_plan_fee),
        # A lapsed reservation or quarantine shows nothing of its former holder.
        holder=None if lapsed else row.holder,
        reserved_until=row.reserved_until if status is RESERVED else None,
        customer_id=row.customer_id,
        subscription_ref=row.subscription_ref,
        assigned_at=row.assigned_at,
        quarantine_until=row.quarantine_until if status is QUARANTINE else None,
        range_id=row.range_id,
    )


def _read(uow: UnitOfWork, value: str, *, lock: bool = False) -> Row[Any]:
    """The visible row of ``value`` (locked on PostgreSQL if asked) or NotFound."""
    query = select(NUMBERS).where(NUMBERS.c.value == value, uow.actor.scope(NUMBERS.c.org_path))
    if lock:
        query = query.with_for_update()  # not rendered on SQLite, which serialises writers
    row = uow.connection.execute(query).first()
    if row is None:
        raise NotFound(_("Number {number} not found"), number=mask_phone(value))
    return row


def _view(uow: UnitOfWork, value: str, now: datetime) -> NumberOut:
    row = uow.connection.execute(
        _view_query().where(NUMBERS.c.value == value, uow.actor.scope(NUMBERS.c.org_path))
    ).first()
    if row is None:
        raise NotFound(_("Number {number} not found"), number=mask_phone(value))
    return _to_view(row, now)


def get(uow: UnitOfWork, number: str) -> NumberOut:
    """One number of the actor's organisation subtree (others: NotFound)."""
    uow.actor.require("numbers.read")
    return _view(uow, _number(number), utcnow())


def search_free(
    uow: UnitOfWork,
    org_path: str,
    *,
    pattern: str | None = None,
    contains: str | None = None,
    ends_with: str | None = None,
    grade: str | None = None,
    kind: NumberKind | str | None = None,
    limit: int = 20,
    after: str | None = None,
) -> list[NumberOut]:
    """Free numbers of a region for a customer to pick, in number order.

    ``pattern`` is a whole-number mask (``138*8888``, ``1380010??88``: ``?`` one digit,
    ``*`` any digits); ``contains`` / ``ends_with`` are digit strings; ``after`` continues
    from a number (keyset paging — a kiosk may start from a random one to spread
    customers over the pool).
    """
    uow.actor.require("numbers.read")
    _check_org_path(org_path)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH:
        raise ValidationError(_("Search limit must be between 1 and {max}"), max=MAX_SEARCH)
    now = utcnow()
    t = NUMBERS.c
    conditions: list[ColumnElement[bool]] = [
        uow.actor.scope(t.org_path),
        t.org_path.startswith(org_path, autoescape=True),
        in_state(FREE, now),
    ]
    if pattern is not None:
        conditions.append(t.value.like(rules.like_from_mask(pattern)))
    for digits, build in ((contains, t.value.contains), (ends_with, t.value.endswith)):
        if digits is not None:
            if not rules.is_digits(digits):
                raise ValidationError(_("Searched digits may contain only 0-9"))
            conditions.append(build(digits))
    if grade is not None:
        conditions.append(t.grade_code == _known_grade(uow, grade))
    if kind is not None:
        conditions.append(t.kind == _kind(kind))
    if after is not None:
        if not rules.is_digits(after):
            raise ValidationError(_("Searched digits may contain only 0-9"))
        conditions.append(t.value > after)
    rows = uow.connection.execute(
        _view_query().where(*conditions).order_by(t.value).limit(limit)
    ).all()
    return [_to_view(row, now) for row in rows]


def count_by_status(uow: UnitOfWork, org_path: str) -> dict[NumberStatus, int]:
    """Numbers of a region (within the actor's subtree) by effective state."""
    uow.actor.require("numbers.read")
    _check_org_path(org_path)
    now = utcnow()
    # Label in a subquery, group outside: PostgreSQL will not match a CASE carrying bound
    # parameters in SELECT with the "same" CASE in GROUP BY.
    inner = (
        select(_effective_sql(now).label("state"))
        .where(
            uow.actor.scope(NUMBERS.c.org_path),
            NUMBERS.c.org_path.startswith(org_path, autoescape=True),
        )
        .subquery()
    )
    rows = uow.connection.execute(select(inner.c.state, func.count()).group_by(inner.c.state)).all()
    counts = dict.fromkeys(NumberStatus, 0)
    for state, count in rows:
        counts[NumberStatus(state)] = int(count)
    return counts


def count_for_id_card(uow: UnitOfWork, id_index: str) -> int:
    """Numbers assigned to one ID card across the whole operator (for 一证五号 hints)."""
    uow.actor.require("numbers.read")
    return _assigned_to_card(uow, _check_id_index(id_index))


def _assigned_to_card(uow: UnitOfWork, id_index: str) -> int:
    query = select(func.count()).where(NUMBERS.c.id_index == id_index, NUMBERS.c.status == ASSIGNED)
    return int(uow.connection.execute(query).scalar_one())


# -- reservation -------------------------------------------------------------------------


def reserve(uow: UnitOfWork, number: str, holder: str, minutes: int | None = None) -> NumberOut:
    """Hold a free number for ``holder`` for ``minutes`` (default: the operator setting).

    Reserving a number one already holds renews the reservation. Exactly one of several
    concurrent callers wins a free number; the others get Conflict.
    """
    uow.actor.require("numbers.reserve")
    value = _number(number)
    _check_holder(holder)
    until_minutes = _reservation_minutes(minutes)
    now = utcnow()
    before = _read(uow, value, lock=True)  # a consistent "before" for the audit record
    condition = or_(
        _leaving(Event.reserve, now),
        and_(_leaving(Event.renew, now), NUMBERS.c.holder == holder),
    )
    until = now + timedelta(minutes=until_minutes)
    row = _move(
        uow,
        value,
        _target(Event.reserve, Event.renew),
        condition,
        now,
        holder=holder,
        reserved_until=until,
    )
    if row is None:
        raise _refusal(uow, value, holder, now, Event.reserve)
    previous = effective_status(before, now)
    # A lapsed reservation taken over is worth knowing when a customer complains.
    lapsed_holder = before.holder if before.status == RESERVED and previous is FREE else None
    uow.audit(
        "numbers.reserved",
        "number",
        value,
        {
            "holder": holder,
            "until": until.isoformat(),
            "renewed": previous is RESERVED,
            "lapsed_holder": lapsed_holder,
        },
    )
    return _view(uow, value, now)


def cancel_reservation(uow: UnitOfWork, number: str, holder: str) -> NumberOut:
    """The holder gives a reserved number back to the pool at once."""
    uow.actor.require("numbers.reserve")
    value = _number(number)
    _check_holder(holder)
    now = utcnow()
    _read(uow, value, lock=True)
    condition = and_(_leaving(Event.cancel, now), NUMBERS.c.holder == holder)
    row = _move(uow, value, _target(Event.cancel), condition, now, holder=None, reserved_until=None)
    if row is None:
        raise _refusal(uow, value, holder, now, Event.cancel)
    uow.audit("numbers.reservation_cancelled", "number", value, {"holder": holder})
    return _view(uow, value, now)


def release_expired(uow: UnitOfWork) -> SweepOut:
    """Sweep: rewrite lapsed reservations to ``free`` (they already read as free)."""
    uow.actor.require("numbers.admin")
    now = utcnow()
    t = NUMBERS.c
    statement = (
        update(NUMBERS)
        .where(
            uow.actor.scope(t.org_path),
            t.status == RESERVED,
            t.reserved_until <= now,
        )
        .values(status=FREE, holder=None, reserved_until=None, updated_at=now)
        .returning(t.value)
    )
    return _swept(uow, "numbers.reservations_expired", statement)


def _swept(uow: UnitOfWork, action: str, statement: Any) -> SweepOut:
    numbers = sorted(str(v) for v in uow.connection.execute(statement).scalars())
    if numbers:
        # One record per sweep, naming every number it touched.
        uow.audit(action, "number_pool", "sweep", {"count": len(numbers), "numbers": numbers})
    return SweepOut(count=len(numbers), numbers=numbers)


# -- assignment and release --------------------------------------------------------------


def assign(
    uow: UnitOfWork,
    number: str,
    *,
    holder: str,
    id_index: str,
    customer_id: str,
    subscription_ref: str | None = None,
) -> NumberOut:
    """Give a number to a customer's line, registered to an ID card (real name 实名制).

    Only from the holder's own live reservation — or straight from free for staff with
    ``numbers.admin``. Refuses a card already holding ``settings.numbers_per_id_card``
    numbers (一证五号), counted across the whole operator and safe under concurrency.
    ``id_index`` is ``crypto.blind_index(id_number, "id_number")``, never the ID number.
    A batch of one through ``assign_batch`` — the one write path of assignments — so its
    errors carry ``item=0`` beside their usual params.
    """
    item = AssignItem(
        number=number,
        holder=holder,
        id_index=id_index,
        customer_id=customer_id,
        subscription_ref=subscription_ref,
    )
    return assign_batch(uow, [item])[0]


def assign_batch(uow: UnitOfWork, items: Sequence[AssignItem]) -> list[NumberOut]:
    """Assign many numbers in one transaction (the demo seed, bulk orders), each exactly as
    ``assign`` would; the assigned numbers in input order.

    Everything is checked before anything is written, and a batch with one bad item is
    refused whole: the error is the one ``assign`` raises for that item, with the item's
    position (from 0) in the ``item`` param; a number twice in the batch is refused too.
    一证五号 counts each card's numbers already assigned plus the batch's own items.

    Statements run per batch (or per chunk of ``LOOKUP_BATCH``), never per number: read the
    numbers and check every item → upsert the cards' lock rows in sorted order → count the
    cards' numbers → (PostgreSQL) lock the numbers in sorted order and check them again →
    one executemany ``UPDATE`` → one audit record and one ``numbers.assigned`` event per
    number. The lock order card → number (→ audit chain heads at commit) is the one every
    use case follows, and sorted keys within each kind keep two batches from deadlocking.
    """
    uow.actor.require("numbers.assign")
    if not items:
        return []
    now = utcnow()
    admin = uow.actor.can("numbers.admin")
    values, rows = _read_and_check(uow, items, now, admin)
    cards = sorted({item.id_index for item in items})
    _lock_id_cards(uow, cards, now)
    _check_card_limits(uow, items, cards)
    if uow.dialect != "sqlite":
        # Another transaction may have taken one of the numbers since the first read. On
        # SQLite nothing can have changed: this transaction has held the database's write
        # lock since its first statement (BEGIN IMMEDIATE).
        rows = _number_rows(uow, values, lock=True)
        _check_assignable(items, values, rows, now, admin)
    _write_assignments(uow, items, values, now, admin)
    return _record_assignments(uow, items, values, rows, now)


def _read_and_check(
    uow: UnitOfWork, items: Sequence[AssignItem], now: datetime, admin: bool
) -> tuple[list[str], dict[str, Any]]:
    """Every item checked as ``assign`` checks it: the canonical numbers, and their rows."""
    # Numbers typed exactly as stored are read first: a stored value is canonical and was
    # validated with its range, so only the others need phonenumbers (~30 µs each).
    rows = _number_rows(uow, [item.number for item in items if _maybe_stored(item.number)])
    values = _checked_items(items, rows)
    rows.update(_number_rows(uow, [value for value in values if value not in rows]))
    _check_assignable(items, values, rows, now, admin)
    return values, rows


def _record_assignments(
    uow: UnitOfWork,
    items: Sequence[AssignItem],
    values: Sequence[str],
    rows: Mapping[str, Any],
    now: datetime,
) -> list[NumberOut]:
    """One audit record and one outbox event per number; the numbers as ``get`` shows them."""
    fees = _grade_fees(uow)
    assigned_at = now.isoformat()  # the same for every item: converted once
    assigned = []
    for item, value in zip(items, values, strict=True):
        # Each field read once: a result row's attribute lookup costs more than a local's,
        # and a seed batch records thousands of numbers.
        row = rows[value]
        kind, org_path, grade_code = row.kind, row.org_path, row.grade_code
        holder, customer_id, subscription_ref = item.holder, item.customer_id, item.subscription_ref
        uow.audit(
            "numbers.assigned",
            "number",
            value,
            {
                "holder": holder,
                "customer_id": customer_id,
                "subscription_ref": subscription_ref,
                "id_index": item.id_index,
                "grade_code": grade_code,
            },
        )
        uow.emit(
            "numbers.assigned",
            {
                "number": value,
                "kind": kind,
                "org_path": org_path,
                "grade_code": grade_code,
                "customer_id": customer_id,
                "subscription_ref": subscription_ref,
                "holder": holder,
                "assigned_at": assigned_at,
            },
            key=value,
        )
        premium_fee, min_plan_fee = fees.get(grade_code, (0, 0))
        assigned.append(
            NumberOut(
                value=value,
                kind=NumberKind(kind),
                org_path=org_path,
                status=ASSIGNED,
                grade_code=grade_code,
                premium_fee=premium_fee,
                min_plan_fee=min_plan_fee,
                holder=holder,
                customer_id=customer_id,
                subscription_ref=subscription_ref,
                assigned_at=now,
                range_id=row.range_id,
            )
        )
    return assigned


def _maybe_stored(raw: object) -> bool:
    return rules.is_digits(raw) and len(cast(str, raw)) <= MAX_STORED_DIGITS


def _number_rows(uow: UnitOfWork, values: Sequence[str], *, lock: bool = False) -> dict[str, Any]:
    """The visible rows of ``values`` by value; with ``lock``, row-locked in value order
    (on PostgreSQL; SQLite serialises writers), chunk after chunk."""
    t = NUMBERS.c
    columns = (
        t.value,
        t.kind,
        t.org_path,
        t.grade_code,
        t.status,
        t.holder,
        t.reserved_until,
        t.quarantine_until,
        t.range_id,
    )
    found: dict[str, Any] = {}
    for chunk in _chunks(sorted(set(values))):
        query = select(*columns).where(
            in_list(t.value, chunk, uow.dialect), uow.actor.scope(t.org_path)
        )
        if lock:
            # Sorted, so two batches sharing numbers lock them in the same order.
            query = query.order_by(t.value).with_for_update()
        found.update((row.value, row) for row in uow.connection.execute(query).all())
    return found


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), LOOKUP_BATCH):
        yield values[start : start + LOOKUP_BATCH]


def _checked_items(items: Sequence[AssignItem], stored: Mapping[str, Any]) -> list[str]:
    """Each item's canonical number after checking its fields in ``assign``'s order."""
    values: list[str] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            raw = item.number
            value = raw if isinstance(raw, str) and raw in stored else _number(raw)
            _check_holder(item.holder)
            _check_id_index(item.id_index)
            _check_customer(item.customer_id, item.subscription_ref)
            if value in first_index:
                raise ValidationError(
                    _("Number {number} is in the batch twice, as items {first} and {item}"),
                    number=mask_phone(value),
                    first=first_index[value],
                    item=index,
                )
        except DomainError as error:
            error.params.setdefault("item", index)
            raise
        first_index[value] = index
        values.append(value)
    return values


def _may_assign(row: Any, holder: str, now: datetime, admin: bool) -> bool:
    """Python twin of ``_write_assignments``' condition for a row already read."""
    state = effective_status(row, now)
    if state in TRANSITIONS[Event.assign][0] and row.holder == holder:
        return True
    return admin and state in TRANSITIONS[Event.assign_direct][0]


def _check_assignable(
    items: Sequence[AssignItem],
    values: Sequence[str],
    rows: Mapping[str, Any],
    now: datetime,
    admin: bool,
) -> None:
    """Refuse the first item whose number is missing, out of scope or not assignable."""
    event = Event.assign_direct if admin else Event.assign
    for index, (item, value) in enumerate(zip(items, values, strict=True)):
        row = rows.get(value)
        if row is None:
            raise NotFound(_("Number {number} not found"), number=mask_phone(value), item=index)
        if not _may_assign(row, item.holder, now, admin):
            error = _refusal_of(row, value, item.holder, now, event)
            error.params["item"] = index
            raise error


def _lock_id_cards(uow: UnitOfWork, cards: Sequence[str], now: datetime) -> None:
    """Upsert the cards' rows in the (sorted) order given: each row stays locked until
    this transaction ends, and two batches locking in one order cannot deadlock."""
    conn = uow.connection
    if conn.dialect.name == "postgresql" and len(cards) > 1:
        # One statement for the batch, the cards as one array, upserted in its order.
        conn.exec_driver_sql(_LOCK_ID_CARDS_UNNEST, {"cards": list(cards), "now": now})
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(ID_CARDS)
    statement = statement.on_conflict_do_update(
        index_elements=[ID_CARDS.c.id_index],
        set_={"touched_at": statement.excluded.touched_at},
    )
    execute_many(conn, statement, [{"id_index": card, "touched_at": now} for card in cards])


# ``_lock_id_cards``' upsert for a batch on PostgreSQL: the same rows, locked in the same
# (array) order, in one statement instead of one per card (psycopg's executemany sends
# one statement per row: ~10 us of client CPU each, and a server round of its own). The
# array is sent in psycopg's binary format (``%(cards)b``), cheaper to write than text.
_LOCK_ID_CARDS_UNNEST = (
    "INSERT INTO number_id_card (id_index, touched_at)"
    " SELECT v.id_index, %(now)s FROM unnest(%(cards)b::varchar[]) WITH ORDINALITY"
    " AS v(id_index, n) ORDER BY v.n"
    " ON CONFLICT (id_index) DO UPDATE SET touched_at = excluded.touched_at"
)


def _check_card_limits(uow: UnitOfWork, items: Sequence[AssignItem], cards: Sequence[str]) -> None:
    """一证五号 over the batch: numbers already assigned to each (locked) card, then the
    batch's items in order; the first item going over the limit is refused."""
    t = NUMBERS.c
    held: dict[str, int] = {}
    for chunk in _chunks(cards):
        query = (
            select(t.id_index, func.count())
            .where(in_list(t.id_index, chunk, uow.dialect), t.status == ASSIGNED)
            .group_by(t.id_index)
        )
        held.update((str(card), int(count)) for card, count in uow.connection.execute(query))
    limit = get_settings().numbers_per_id_card
    for index, item in enumerate(items):
        count = held.get(item.id_index, 0) + 1
        if count > limit:
            raise Conflict(
                _("This ID card already holds {limit} numbers, the most one ID card may hold"),
                code="id_card_limit",
                limit=limit,
                item=index,
            )
        held[item.id_index] = count


def _write_assignments(
    uow: UnitOfWork,
    items: Sequence[AssignItem],
    values: Sequence[str],
    now: datetime,
    admin: bool,
) -> None:
    """The conditional ``UPDATE`` of ``assign``, once per number: one executemany, or on
    PostgreSQL one ``UPDATE .. FROM unnest(arrays)`` for the whole batch (psycopg's
    executemany sends one statement per row: ~10 us of client CPU each, and a server
    round of its own; the rows are locked already, in value order, by ``assign_batch``).

    The time is bound where it is needed (three places in the condition, two new values):
    ``core.db.execute_many`` converts a value every row shares once per batch, not once
    per row and place. (It used to come from a one-row derived table ``clock``, for that
    conversion's sake; on SQLite the ``UPDATE .. FROM`` made each row's update cost two to
    four times as much, ~13-23 us against ~6 us a row.) Cleared columns are SQL ``NULL``.

    The rows are locked and checked already; the condition stays as a safety net, so a
    broken lock can never overwrite another transaction's number."""
    # In value order: neighbouring numbers share pages of the table and its indexes.
    ordered = sorted(zip(items, values, strict=True), key=lambda pair: pair[1])
    at = bindparam("b_now", type_=NUMBERS.c.updated_at.type)
    if uow.dialect == "postgresql" and len(ordered) > 1:
        statement = _assignment_update(uow, admin, at, _ASSIGNMENT_COLUMNS)
        changed = uow.connection.execute(
            statement,
            {
                "b_values": [value for _item, value in ordered],
                "b_holders": [item.holder for item, _value in ordered],
                "b_id_indexes": [item.id_index for item, _value in ordered],
                "b_customer_ids": [item.customer_id for item, _value in ordered],
                "b_subscription_refs": [item.subscription_ref for item, _value in ordered],
                "b_now": now,
            },
        ).rowcount
    else:
        row: dict[str, ColumnElement[Any]] = {
            name: bindparam(f"b_{name}") for name in _ASSIGNMENT_FIELDS
        }
        statement = _assignment_update(uow, admin, at, row)
        parameters = [
            {
                "b_value": value,
                "b_holder": item.holder,
                "b_id_index": item.id_index,
                "b_customer_id": item.customer_id,
                "b_subscription_ref": item.subscription_ref,
                "b_now": now,
            }
            for item, value in ordered
        ]
        changed = execute_many(uow.connection, statement, parameters)
    if changed != len(ordered):  # both drivers report executemany row counts
        raise RuntimeError(f"assigned {changed} of {len(ordered)} locked, checked numbers")


def _assignment_update(
    uow: UnitOfWork,
    admin: bool,
    at: ColumnElement[datetime],
    row: Mapping[str, ColumnElement[Any]],
) -> Update:
    """``_write_assignments``' UPDATE with each item's values taken from ``row`` (bound
    parameters, or the columns of a batch's arrays)."""
    t = NUMBERS.c
    condition = and_(_leaving(Event.assign, at), t.holder == row["holder"])
    if admin:
        condition = or_(condition, _leaving(Event.assign_direct, at))
    return (
        update(NUMBERS)
        .where(t.value == row["value"], uow.actor.scope(t.org_path), condition)
        .values(
            status=_target(Event.assign, Event.assign_direct),
            holder=row["holder"],
            reserved_until=null(),
            id_index=row["id_index"],
            customer_id=row["customer_id"],
            subscription_ref=row["subscription_ref"],
            assigned_at=at,
            quarantine_until=null(),
            updated_at=at,
        )
    )


# A batch's items as one row each of ``unnest(arrays)`` (PostgreSQL), for
# ``_write_assignments``: ``UPDATE pool_number .. FROM`` this.
_ASSIGNMENT_FIELDS = ("value", "holder", "id_index", "customer_id", "subscription_ref")
_ASSIGNMENT_ARRAYS = (
    func.unnest(
        *(
            bindparam(name, type_=ARRAY(String()))
            for name in (
                "b_values",
                "b_holders",
                "b_id_indexes",
                "b_customer_ids",
                "b_subscription_refs",
            )
        )
    )
    .table_valued(*_ASSIGNMENT_FIELDS)
    .render_derived(name="batch")
)
_ASSIGNMENT_COLUMNS = {name: _ASSIGNMENT_ARRAYS.c[name] for name in _ASSIGNMENT_FIELDS}


def _grade_fees(uow: UnitOfWork) -> dict[str, tuple[int, int]]:
    query = select(GRADES.c.code, GRADES.c.premium_fee, GRADES.c.min_plan_fee)
    return {
        str(code): (int(premium), int(plan))
        for code, premium, plan in uow.connection.execute(query)
    }


def release(uow: UnitOfWork, number: str) -> NumberOut:
    """The line is gone (拆机, number change…): the number rests in quarantine 冷冻期 for
    ``settings.number_quarantine_days`` and stops counting against its ID card."""
    uow.actor.require("numbers.assign")
    value = _number(number)
    now = utcnow()
    before = _read(uow, value, lock=True)
    until = now + timedelta(days=get_settings().number_quarantine_days)
    row = _move(
        uow,
        value,
        _target(Event.release),
        _leaving(Event.release, now),
        now,
        holder=None,
        reserved_until=None,
        customer_id=None,
        subscription_ref=None,
        id_index=None,
        assigned_at=None,
        quarantine_until=until,
    )
    if row is None:
        raise Conflict(
            _("Number {number} is not assigned"), code="not_assigned", number=mask_phone(value)
        )
    detail = {
        "customer_id": before.customer_id,
        "subscription_ref": before.subscription_ref,
        "quarantine_until": until.isoformat(),
    }
    uow.audit("numbers.released", "number", value, detail)
    uow.emit("numbers.released", {"number": value, **detail}, key=value)
    return _view(uow, value, now)


def release_quarantined(uow: UnitOfWork) -> SweepOut:
    """Sweep: rewrite ended quarantines to ``free`` (they already read as free)."""
    uow.actor.require("numbers.admin")
    now = utcnow()
    t = NUMBERS.c
    statement = (
        update(NUMBERS)
        .where(
            uow.actor.scope(t.org_path),
            t.status == QUARANTINE,
            t.quarantine_until <= now,
        )
        .values(status=FREE, quarantine_until=None, updated_at=now)
        .returning(t.value)
    )
    return _swept(uow, "numbers.quarantine_ended", statement)


def _refusal(uow: UnitOfWork, value: str, holder: str, now: datetime, event: Event) -> DomainError:
    """Why ``holder`` could not do ``event`` to ``value``, read after the refusal."""
    row = _read(uow, value)  # NotFound propagates: missing or outside the actor's subtree
    return _refusal_of(row, value, holder, now, event)


def _refusal_of(row: Any, value: str, holder: str, now: datetime, event: Event) -> DomainError:
    """Why ``holder`` cannot do ``event`` to ``value``, whose row is ``row``."""
    state = effective_status(row, now)
    masked = mask_phone(value)
    if state is RESERVED and row.holder != holder:
        return Conflict(
            _("Number {number} is reserved by someone else"), code="reserved", number=masked
        )
    if state is FREE and row.status == RESERVED and row.holder == holder:
        return Conflict(
            _("The reservation of number {number} has expired; reserve it again"),
            code="reservation_expired",
            number=masked,
        )
    if state is FREE and event is Event.assign:
        return Conflict(
            _("Number {number} must be reserved before it is assigned"),
            code="not_reserved",
            number=masked,
        )
    if state is FREE and event is Event.cancel:
        return Conflict(_("Number {number} is not reserved"), code="not_reserved", number=masked)
    return Conflict(_("Number {number} is not available"), code="unavailable", number=masked)


# -- grades 靓号 -------------------------------------------------------------------------


def _grade_out(grade: NumberGrade | rules.GradeRule) -> GradeOut:
    return GradeOut(
        code=grade.code,
        name_zh=grade.name_zh,
        name_en=grade.name_en,
        pattern=grade.pattern,
        digits=grade.digits,
        premium_fee=grade.premium_fee,
        min_plan_fee=grade.min_plan_fee,
        priority=grade.priority,
    )


def _rules(uow: UnitOfWork) -> list[rules.GradeRule]:
    grades = uow.session.scalars(select(NumberGrade)).all()
    return rules.rank(
        rules.rule(
            g.code,
            g.name_zh,
            g.name_en,
            g.pattern,
            g.digits,
            g.premium_fee,
            g.min_plan_fee,
            g.priority,
        )
        for g in grades
    )


def _known_grade(uow: UnitOfWork, code: str) -> str:
    if code == rules.ORDINARY_CODE:
        return code
    exists = uow.session.scalar(select(NumberGrade.id).where(NumberGrade.code == code))
    if exists is None:
        raise ValidationError(_("Unknown grade {grade}"), grade=code)
    return code


def list_grades(uow: UnitOfWork) -> list[GradeOut]:
    """Every grade, best first, ending with the built-in ordinary grade (no fee)."""
    uow.actor.require("numbers.read")
    return [_grade_out(r) for r in [*_rules(uow), rules.ORDINARY]]


def create_grade(
    uow: UnitOfWork,
    *,
    code: str,
    name_zh: str,
    name_en: str,
    pattern: str,
    digits: int,
    premium_fee: int,
    min_plan_fee: int,
    priority: int = 0,
) -> GradeOut:
    """Define a premium grade; ``pattern`` must fully match the last ``digits`` digits."""
    uow.actor.require("numbers.admin")
    if not isinstance(code, str) or not _GRADE_CODE.fullmatch(code) or code == rules.ORDINARY_CODE:
        raise ValidationError(_("Invalid grade code {grade}"), grade=str(code)[:40])
    for name in (name_zh, name_en):
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 50:
            raise ValidationError(_("A grade needs a Chinese and an English name"))
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(_("A grade priority is a whole number"))
    rules.compile_pattern(pattern, digits)
    grade = NumberGrade(
        id=new_id(),
        code=code,
        name_zh=name_zh.strip(),
        name_en=name_en.strip(),
        pattern=pattern,
        digits=digits,
        premium_fee=_fee(premium_fee),
        min_plan_fee=_fee(min_plan_fee),
        priority=priority,
        created_at=utcnow(),
    )
    if uow.session.scalar(select(NumberGrade.id).where(NumberGrade.code == code)) is not None:
        raise Conflict(_("Grade {grade} already exists"), grade=code)
    uow.session.add(grade)
    uow.session.flush()
    uow.audit("numbers.grade_created", "number_grade", code, _grade_out(grade).model_dump())
    return _grade_out(grade)


def update_grade_fees(
    uow: UnitOfWork, code: str, *, premium_fee: int, min_plan_fee: int
) -> GradeOut:
    """New fees for a grade; numbers keep their grade, so the new fees apply to them all."""
    uow.actor.require("numbers.admin")
    grade = uow.session.scalar(select(NumberGrade).where(NumberGrade.code == code))
    if grade is None:
        raise ValidationError(_("Unknown grade {grade}"), grade=code)
    detail = {
        "before": {"premium_fee": grade.premium_fee, "min_plan_fee": grade.min_plan_fee},
        "after": {"premium_fee": _fee(premium_fee), "min_plan_fee": _fee(min_plan_fee)},
    }
    grade.premium_fee, grade.min_plan_fee = premium_fee, min_plan_fee
    uow.session.flush()
    uow.audit("numbers.grade_fees_changed", "number_grade", code, detail)
    return _grade_out(grade)


def install_default_grades(uow: UnitOfWork) -> list[str]:
    """Install ``rules.DEFAULT_GRADES`` that are not defined yet; the codes installed."""
    uow.actor.require("numbers.admin")
    existing = set(uow.session.scalars(select(NumberGrade.code)).all())
    installed = []
    for default in rules.DEFAULT_GRADES:
        if default.code not in existing:
            create_grade(
                uow,
                code=default.code,
                name_zh=default.name_zh,
                name_en=default.name_en,
                pattern=default.pattern,
                digits=default.digits,
                premium_fee=default.premium_fee,
                min_plan_fee=default.min_plan_fee,
                priority=default.priority,
            )
            installed.append(default.code)
    return installed


def classify(uow: UnitOfWork, number: str) -> GradeOut:
    """The best-matching grade of ``number`` under the grades defined now."""
    uow.actor.require("numbers.read")
    value = _number(number)
    return _grade_out(rules.best_grade(value, _rules(uow)))


# -- ranges ------------------------------------------------------------------------------


def _kind(kind: NumberKind | str) -> NumberKind:
    try:
        return NumberKind(kind)
    except ValueError:
        raise ValidationError(_("Unknown number kind {kind}"), kind=str(kind)) from None


def _range_values(kind: NumberKind, prefix: str, start: str, end: str) -> list[str]:
    if not rules.is_digits(prefix) or len(prefix) > MAX_PREFIX_DIGITS:
        raise ValidationError(_("A range prefix is 1 to {max} digits"), max=MAX_PREFIX_DIGITS)
    if (
        not rules.is_digits(start)
        or not rules.is_digits(end)
        or len(start) != len(end)
        or len(start) > MAX_SUFFIX_DIGITS
    ):
        raise ValidationError(
            _("Range start and end are digit strings of the same length, at most {max}"),
            max=MAX_SUFFIX_DIGITS,
        )
    first, last = int(start), int(end)
    if first > last:
        raise ValidationError(_("Range start {start} is after its end {end}"), start=start, end=end)
    if last - first + 1 > MAX_RANGE_SIZE:
        raise ValidationError(_("A range holds at most {max} numbers"), max=MAX_RANGE_SIZE)
    width = len(start)
    values = [f"{prefix}{n:0{width}d}" for n in range(first, last + 1)]
    for value in values:
        if not rules.is_range_number(value, kind):
            # Not personal data yet: the operator needs to see which number is wrong.
            message = (
                _("{number} in the range is not a valid mobile number")
                if kind is NumberKind.mobile
                else _("{number} in the range is not a valid fixed-line number")
            )
            raise ValidationError(message, number=value)
    return values


def create_range(
    uow: UnitOfWork,
    *,
    org_path: str,
    kind: NumberKind | str,
    prefix: str,
    start: str,
    end: str,
    name: str = "",
) -> RangeOut:
    """Add ``prefix`` + every suffix ``start``…``end`` (equal-width digit strings) to the
    pool of region ``org_path``, each number graded, in batched inserts; e.g. prefix
    ``1380010``, start ``0000``, end ``9999`` → 13800100000…13800109999.

    Every number is checked against the real prefix lists; a range overlapping numbers
    already in the pool is refused whole. One audit record for the range.
    """
    uow.actor.require("numbers.admin")
    _check_org_path(org_path)
    if not uow.actor.sees(org_path):
        raise NotFound(_("Organisation {org_path} not found"), org_path=org_path)
    number_kind = _kind(kind)
    if not isinstance(name, str) or len(name) > 100:
        raise ValidationError(_("A range name has at most 100 characters"))
    values = _range_values(number_kind, prefix, start, end)
    first, last = values[0], values[-1]
    overlap = select(func.count()).where(
        func.length(NUMBERS.c.value) == len(first), NUMBERS.c.value.between(first, last)
    )
    existing = int(uow.connection.execute(overlap).scalar_one())
    if existing:
        raise Conflict(_("The range overlaps {count} numbers already in the pool"), count=existing)
    now = utcnow()
    number_range = NumberRange(
        id=new_id(),
        org_path=org_path,
        kind=number_kind,
        prefix=prefix,
        start_suffix=start,
        end_suffix=end,
        size=len(values),
        name=name,
        created_at=now,
        created_by=uow.actor.id,
    )
    uow.session.add(number_range)
    uow.session.flush()  # the numbers' foreign key needs the range row first
    grades = _insert_numbers(uow, number_range, values, now)
    uow.audit(
        "numbers.range_created",
        "number_range",
        number_range.id,
        {
            "org_path": org_path,
            "kind": number_kind.value,
            "first": first,
            "last": last,
            "size": len(values),
            "grades": grades,
        },
    )
    return _range_out(number_range, grades)


def _insert_numbers(
    uow: UnitOfWork, number_range: NumberRange, values: Sequence[str], now: datetime
) -> dict[str, int]:
    ranked = _rules(uow)
    grades: Counter[str] = Counter()
    batch: list[dict[str, Any]] = []
    conn = uow.connection
    try:
        for value in values:
            grade = rules.best_grade(value, ranked).code
            grades[grade] += 1
            batch.append(
                {
                    "id": new_id(),
                    "value": value,
                    "kind": number_range.kind,
                    "range_id": number_range.id,
                    "org_path": number_range.org_path,
                    "grade_code": grade,
                    "status": FREE.value,
                    "updated_at": now,
                }
            )
            if len(batch) >= INSERT_BATCH:
                conn.execute(NUMBERS.insert(), batch)
                batch = []
        if batch:
            conn.execute(NUMBERS.insert(), batch)
    except IntegrityError:
        # Another transaction added overlapping numbers after our overlap check.
        raise Conflict(_("The range overlaps numbers already in the pool")) from None
    return dict(sorted(grades.items()))


def _range_out(number_range: NumberRange, grades: dict[str, int] | None = None) -> RangeOut:
    return RangeOut(
        id=number_range.id,
        org_path=number_range.org_path,
        kind=NumberKind(number_range.kind),
        prefix=number_range.prefix,
        start_suffix=number_range.start_suffix,
        end_suffix=number_range.end_suffix,
        first=number_range.prefix + number_range.start_suffix,
        last=number_range.prefix + number_range.end_suffix,
        size=number_range.size,
        name=number_range.name,
        created_at=number_range.created_at,
        grades=grades or {},
    )


def list_ranges(uow: UnitOfWork, org_path: str | None = None) -> list[RangeOut]:
    """Ranges of the actor's subtree (narrowed to ``org_path`` if given), by first number."""
    uow.actor.require("numbers.read")
    query = select(NumberRange).where(uow.actor.scope(NumberRange.org_path))
    if org_path is not None:
        _check_org_path(org_path)
        query = query.where(NumberRange.org_path.startswith(org_path, autoescape=True))
    ranges = uow.session.scalars(query.order_by(NumberRange.prefix, NumberRange.start_suffix))
    return [_range_out(r) for r in ranges]


# -- lists for the TMF685 resource pool API and the console ------------------------------

# What a list of ranges filters on (``core.query``), besides ``org_code``: the owning
# region by its org code, i.e. the last segment of the range's org path (equality only).
RANGE_FILTERS: dict[str, FilterField] = {
    "kind": FilterField(NumberRange.kind, lambda value: NumberKind(value).value),
}
# What a list of live reservations filters on.
RESERVATION_FILTERS: dict[str, FilterField] = {
    "holder": FilterField(NUMBERS.c.holder),
    "number": FilterField(NUMBERS.c.value),
    "range_id": FilterField(NUMBERS.c.range_id),
    "reserved_until": FilterField(NUMBERS.c.reserved_until, parse_datetime, ordered=True),
}


def _range_clauses(conditions: Sequence[Condition]) -> list[ColumnElement[bool]]:
    """``RANGE_FILTERS`` and ``org_code`` conditions as SQL."""
    clauses = where_clauses([c for c in conditions if c.field != "org_code"], RANGE_FILTERS)
    for condition in conditions:
        if condition.field != "org_code":
            continue
        if condition.op is not Op.eq:
            raise ValidationError(
                _("The operator {op} cannot be used on {field}"),
                code="unsupported_filter",
                op=condition.op.value,
                field=condition.field,
            )
        if condition.values:
            path = NumberRange.org_path
            clauses.append(
                or_(*(path.endswith(f"/{code}/", autoescape=True) for code in condition.values))
            )
    return clauses


def _pool_counts(uow: UnitOfWork, range_ids: Sequence[str]) -> dict[str, dict[NumberStatus, int]]:
    """Numbers of each range by effective state (one grouped query for a page of ranges)."""
    counts = {range_id: dict.fromkeys(NumberStatus, 0) for range_id in range_ids}
    if not range_ids:
        return counts
    # Label in a subquery, group outside (see ``count_by_status``).
    inner = (
        select(NUMBERS.c.range_id, _effective_sql(utcnow()).label("state"))
        .where(NUMBERS.c.range_id.in_(list(range_ids)), uow.actor.scope(NUMBERS.c.org_path))
        .subquery()
    )
    rows = uow.connection.execute(
        select(inner.c.range_id, inner.c.state, func.count()).group_by(
            inner.c.range_id, inner.c.state
        )
    ).all()
    for range_id, state, count in rows:
        counts[range_id][NumberStatus(state)] = int(count)
    return counts


def list_pools(uow: UnitOfWork, query: ListQuery) -> tuple[list[PoolOut], int]:
    """Ranges of the actor's subtree matching ``query`` (``RANGE_FILTERS``) with their
    numbers counted by state, by first number, and how many ranges match in all."""
    uow.actor.require("numbers.read")
    select_ = select(NumberRange).where(
        uow.actor.scope(NumberRange.org_path), *_range_clauses(query.conditions)
    )
    ranges, total = fetch_page(
        uow.session,
        select_,
        query,
        order_by=[NumberRange.prefix, NumberRange.start_suffix, NumberRange.id],
    )
    counts = _pool_counts(uow, [r.id for r in ranges])
    return [PoolOut(range=_range_out(r), counts=counts[r.id]) for r in ranges], total


def get_pool(uow: UnitOfWork, range_id: str) -> PoolOut:
    """One range of the actor's subtree with its numbers counted by state."""
    uow.actor.require("numbers.read")
    found = uow.session.scalars(
        select(NumberRange).where(NumberRange.id == range_id, uow.actor.scope(NumberRange.org_path))
    ).first()
    if found is None:
        raise NotFound(_("No such number range"), code="range_not_found")
    return PoolOut(range=_range_out(found), counts=_pool_counts(uow, [found.id])[found.id])


def list_reservations(uow: UnitOfWork, query: ListQuery) -> tuple[list[NumberOut], int]:
    """Live reservations (numbers whose effective state is reserved) of the actor's
    subtree matching ``query`` (``RESERVATION_FILTERS``), soonest expiry first."""
    uow.actor.require("numbers.read")
    now = utcnow()
    select_ = _view_query().where(
        uow.actor.scope(NUMBERS.c.org_path),
        in_state(RESERVED, now),
        *where_clauses(query.conditions, RESERVATION_FILTERS),
    )
    rows, total = fetch_page(
        uow.session, select_, query, order_by=[NUMBERS.c.reserved_until, NUMBERS.c.value]
    )
    return [_to_view(row, now) for row in rows], total


# What a list of numbers in quarantine filters on.
QUARANTINE_FILTERS: dict[str, FilterField] = {
    "number": FilterField(NUMBERS.c.value),
    "range_id": FilterField(NUMBERS.c.range_id),
    "quarantine_until": FilterField(NUMBERS.c.quarantine_until, parse_datetime, ordered=True),
}


def list_quarantine(uow: UnitOfWork, query: ListQuery) -> tuple[list[NumberOut], int]:
    """Numbers resting in quarantine 冷冻期 right now (effective state) in the actor's
    subtree matching ``query`` (``QUARANTINE_FILTERS``), soonest release first."""
    uow.actor.require("numbers.read")
    now = utcnow()
    select_ = _view_query().where(
        uow.actor.scope(NUMBERS.c.org_path),
        in_state(QUARANTINE, now),
        *where_clauses(query.conditions, QUARANTINE_FILTERS),
    )
    rows, total = fetch_page(
        uow.session, select_, query, order_by=[NUMBERS.c.quarantine_until, NUMBERS.c.value]
    )
    return [_to_view(row, now) for row in rows], total


def get_reservation(uow: UnitOfWork, number: str) -> NumberOut:
    """A number reserved right now, in the actor's subtree; otherwise NotFound (free,
    assigned, lapsed, malformed or another organisation's alike)."""
    uow.actor.require("numbers.read")
    missing = NotFound(_("No such reservation"), code="reservation_not_found")
    try:
        value = _number(number)
    except ValidationError:
        raise missing from None
    row = uow.connection.execute(
        _view_query().where(
            NUMBERS.c.value == value,
            uow.actor.scope(NUMBERS.c.org_path),
            in_state(RESERVED, utcnow()),
        )
    ).first()
    if row is None:
        raise missing
    return _to_view(row, utcnow())


# -- aggregates for reports ------------------------------------------------------------


def count_by_org_path_and_status(uow: UnitOfWork) -> dict[tuple[str, NumberStatus], int]:
    """Numbers of the pool the actor may see, by owning org unit (its path) and
    effective state (a lapsed reservation or an ended quarantine counts as free). A
    report's input: figures only, so it needs ``reports.read``, not ``numbers.read``."""
    uow.actor.require("reports.read")
    now = utcnow()
    # Label in a subquery, group outside (see ``count_by_status``).
    inner = (
        select(NUMBERS.c.org_path.label("org_path"), _effective_sql(now).label("state"))
        .where(uow.actor.scope(NUMBERS.c.org_path))
        .subquery()
    )
    query = select(inner.c.org_path, inner.c.state, func.count()).group_by(
        inner.c.org_path, inner.c.state
    )
    return {
        (path, NumberStatus(state)): int(count)
        for path, state, count in uow.connection.execute(query)
    }
