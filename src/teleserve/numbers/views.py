"""Console pages of the number pool 号码资源: ranges by region with their numbers counted
by state, creating a range, grades 靓号 and their fees, finding free numbers, reserving
and cancelling, the reservations and the quarantine, and an export of every list.

Templates: ``src/teleserve/web/templates/numbers/``. Every read and write goes through
``numbers.service`` as the logged-in actor, so scoping and permissions are the service's:
``numbers.read`` to see the pool of one's own subtree (another organisation's range or
number is ``NotFound`` there and a 404 page here), ``numbers.reserve`` to reserve and
cancel, ``numbers.admin`` for ranges and grades. A refused form comes back with the
service's message beside what was typed; nothing has changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import RedirectResponse, Response

from teleserve.core.errors import DomainError, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery, Op
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import service as numbers
from teleserve.numbers.models import NumberKind, NumberStatus
from teleserve.numbers.schemas import GradeOut, NumberOut, PoolOut
from teleserve.web.console.admin import (
    FormError,
    form_error,
    name_of,
    org_names,
    parse_count,
    parse_yuan,
    yuan_text,
)
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, Cell, audit_export, export_response, require_format

router = APIRouter(prefix="/numbers")

PAGE_SIZE = 20
SEARCH_SIZE = 50
EXPORT_MAX = 10_000
SEARCH_EXPORT_MAX = 1_000  # free numbers are a pick list, not an inventory report
_FETCH = 500
READ = "numbers.read"
RESERVE = "numbers.reserve"
ADMIN = "numbers.admin"

STATUSES = {
    NumberStatus.free: _("Free"),
    NumberStatus.reserved: _("Reserved"),
    NumberStatus.assigned: _("Assigned"),
    NumberStatus.quarantine: _("Quarantine"),
}
KINDS = {NumberKind.mobile: _("Mobile"), NumberKind.fixed: _("Fixed line")}

_DONE = {
    "range": _("The range has been added to the pool."),
    "grade": _("The grade has been created."),
    "fees": _("The grade's fees have been changed."),
    "reserved": _("The number {number} is reserved for {holder} until {until}."),
    "cancelled": _("The reservation of {number} has been cancelled."),
}


def _base(page: ConsolePage, tab: str, **context: Any) -> dict[str, Any]:
    return {
        "tab": tab,
        "statuses": STATUSES,
        "kinds": KINDS,
        "formats": FORMATS,
        "can_admin": page.actor.can(ADMIN),
        "can_reserve": page.actor.can(RESERVE),
        "error": None,
        "done": None,
        "done_params": {},
        **context,
    }


def _all(
    read: Callable[[ListQuery], tuple[list[Any], int]], conditions: tuple[Condition, ...]
) -> list[Any]:
    """Every row of a paged service list, up to ``EXPORT_MAX``."""
    rows: list[Any] = []
    while len(rows) < EXPORT_MAX:
        batch, total = read(ListQuery(conditions, len(rows), _FETCH))
        rows.extend(batch)
        if not batch or len(rows) >= total:
            break
    return rows[:EXPORT_MAX]


def _grade_names(uow: UnitOfWork, locale: str) -> dict[str, str]:
    return {g.code: g.name_en if locale == "en" else g.name_zh for g in numbers.list_grades(uow)}


def _regions(uow: UnitOfWork) -> list[str]:
    """The org paths that own ranges the actor sees (the pool's regions)."""
    return sorted({r.org_path for r in numbers.list_ranges(uow)})


# -- ranges ----------------------------------------------------------------------------


def _range_conditions(region: str, kind: str) -> tuple[Condition, ...]:
    conditions = []
    if region:
        code = region.strip("/").rsplit("/", 1)[-1]
        conditions.append(Condition("org_code", Op.eq, (code,)))
    if kind:
        if kind not in KINDS:
            raise ValidationError(_("Unknown number kind {kind}"), kind=kind[:20])
        conditions.append(Condition("kind", Op.eq, (kind,)))
    return tuple(conditions)


@router.get("", name="numbers_ranges")
def ranges(
    page: ConsolePage = Depends(console_page),
    region: Annotated[str, Query(max_length=255)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    pools: list[PoolOut] = []
    total = 0
    error: FormError | None = None
    with page.uow(readonly=True) as uow:
        names = org_names(uow, page.locale)
        regions = _regions(uow)
        summary = [(path, numbers.count_by_status(uow, path)) for path in regions]
        try:
            query = ListQuery(_range_conditions(region, kind), (p - 1) * PAGE_SIZE, PAGE_SIZE)
            pools, total = numbers.list_pools(uow, query)
        except ValidationError as exc:
            error = form_error(exc)
    context = _base(
        page,
        "ranges",
        summary=summary,
        totals={s: sum(counts[s] for _path, counts in summary) for s in STATUSES},
        regions=regions,
        region_name=name_of(names),
        pools=pools,
        total=total,
        region=region,
        kind=kind,
        p=p,
        has_next=p * PAGE_SIZE < total,
        filters={"region": region, "kind": kind},
        error=error,
        done=_DONE.get(done) if done == "range" else None,
    )
    return page.render("numbers/ranges.html", context)


@router.get("/ranges/export/{fmt}", name="numbers_ranges_export")
def ranges_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    region: Annotated[str, Query(max_length=255)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    conditions = _range_conditions(region, kind)
    local = page.local_cell
    with page.uow() as uow:
        names = org_names(uow, page.locale)
        pools = _all(lambda q: numbers.list_pools(uow, q), conditions)
        audit_export(uow, "number_ranges", fmt, len(pools), {"region": region, "kind": kind})
        uow.commit()
    rows = [
        [
            names.get(pool.range.org_path, pool.range.org_path),
            page.t(KINDS[pool.range.kind]),
            pool.range.name,
            pool.range.first,
            pool.range.last,
            pool.range.size,
            *(pool.counts[s] for s in STATUSES),
            local(pool.range.created_at),
        ]
        for pool in pools
    ]
    headers = [
        page.t(_("Region")),
        page.t(_("Kind")),
        page.t(_("Range name")),
        page.t(_("First number")),
        page.t(_("Last number")),
        page.t(_("Size")),
        *(page.t(label) for label in STATUSES.values()),
        page.t(_("Created")),
    ]
    return export_response(fmt, "number-ranges", headers, rows, sheet=page.t(_("Number ranges")))


def _range_form_context(
    page: ConsolePage, uow: UnitOfWork, values: dict[str, str], error: FormError | None
) -> dict[str, Any]:
    names = org_names(uow, page.locale)
    return _base(page, "ranges", values=values, org_choices=list(names.items()), error=error)


_RANGE_FIELDS = ("org_path", "kind", "prefix", "start", "end", "name")


@router.get("/ranges/new", name="numbers_range_new")
def range_new(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(ADMIN)
    values = dict.fromkeys(_RANGE_FIELDS, "")
    values["kind"] = NumberKind.mobile.value
    with page.uow(readonly=True) as uow:
        context = _range_form_context(page, uow, values, None)
    return page.render("numbers/range_form.html", context)


@router.post("/ranges/new", name="numbers_range_create")
def range_create(
    page: ConsolePage = Depends(console_page),
    org_path: Annotated[str, Form(max_length=255)] = "",
    kind: Annotated[str, Form(max_length=20)] = "",
    prefix: Annotated[str, Form(max_length=20)] = "",
    start: Annotated[str, Form(max_length=20)] = "",
    end: Annotated[str, Form(max_length=20)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    page.actor.require(ADMIN)
    values = {"org_path": org_path, "kind": kind, "prefix": prefix, "start": start}
    values |= {"end": end, "name": name}
    try:
        with page.uow() as uow:
            created = numbers.create_range(
                uow,
                org_path=org_path.strip(),
                kind=kind,
                prefix=prefix.strip(),
                start=start.strip(),
                end=end.strip(),
                name=name.strip(),
            )
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound) and "org_path" not in exc.params:
            raise
        with page.uow(readonly=True) as uow:
            context = _range_form_context(page, uow, values, form_error(exc))
        return page.render("numbers/range_form.html", context, status_code=exc.status)
    url = page.request.url_for("numbers_range", range_id=created.id).path
    return RedirectResponse(f"{url}?done=range", status_code=303)


@router.get("/ranges/{range_id}", name="numbers_range")
def range_detail(
    range_id: str,
    page: ConsolePage = Depends(console_page),
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    with page.uow(readonly=True) as uow:
        pool = numbers.get_pool(uow, range_id)
        names = org_names(uow, page.locale)
    context = _base(
        page,
        "ranges",
        pool=pool,
        region_name=name_of(names),
        done=_DONE.get(done) if done == "range" else None,
    )
    return page.render("numbers/range.html", context)


# -- grades ----------------------------------------------------------------------------

_GRADE_FIELDS = (
    "code",
    "name_zh",
    "name_en",
    "pattern",
    "digits",
    "premium_fee",
    "min_plan_fee",
    "priority",
)
GRADE_LABELS = {
    "premium_fee": _("Premium fee (yuan)"),
    "min_plan_fee": _("Lowest monthly plan (yuan)"),
    "digits": _("Trailing digits"),
    "priority": _("Priority"),
}


def _grades_context(
    page: ConsolePage, values: dict[str, str], error: FormError | None, done: str | None
) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        grades = numbers.list_grades(uow)
    return _base(page, "grades", grades=grades, values=values, error=error, done=done)


@router.get("/grades", name="numbers_grades")
def grades(
    page: ConsolePage = Depends(console_page),
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    values = dict.fromkeys(_GRADE_FIELDS, "")
    done_message = _DONE.get(done) if done in ("grade", "fees") else None
    return page.render("numbers/grades.html", _grades_context(page, values, None, done_message))


@router.post("/grades", name="numbers_grade_create")
def grade_create(
    page: ConsolePage = Depends(console_page),
    code: Annotated[str, Form(max_length=40)] = "",
    name_zh: Annotated[str, Form(max_length=100)] = "",
    name_en: Annotated[str, Form(max_length=100)] = "",
    pattern: Annotated[str, Form(max_length=200)] = "",
    digits: Annotated[str, Form(max_length=10)] = "",
    premium_fee: Annotated[str, Form(max_length=20)] = "",
    min_plan_fee: Annotated[str, Form(max_length=20)] = "",
    priority: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    page.actor.require(ADMIN)
    values = {"code": code, "name_zh": name_zh, "name_en": name_en, "pattern": pattern}
    values |= {"digits": digits, "premium_fee": premium_fee, "min_plan_fee": min_plan_fee}
    values["priority"] = priority
    try:
        with page.uow() as uow:
            numbers.create_grade(
                uow,
                code=code.strip(),
                name_zh=name_zh,
                name_en=name_en,
                pattern=pattern,
                digits=parse_count(digits, page.t(GRADE_LABELS["digits"])),
                premium_fee=parse_yuan(premium_fee, page.t(GRADE_LABELS["premium_fee"])),
                min_plan_fee=parse_yuan(min_plan_fee, page.t(GRADE_LABELS["min_plan_fee"])),
                priority=parse_count(priority, page.t(GRADE_LABELS["priority"])),
            )
            uow.commit()
    except DomainError as exc:
        context = _grades_context(page, values, form_error(exc), None)
        return page.render("numbers/grades.html", context, status_code=exc.status)
    url = page.request.url_for("numbers_grades").path
    return RedirectResponse(f"{url}?done=grade", status_code=303)


def _grade(uow: UnitOfWork, code: str) -> GradeOut:
    for grade in numbers.list_grades(uow):
        if grade.code == code and grade.code != "ordinary":
            return grade
    raise NotFound(_("Unknown grade {grade}"), grade=code[:40])


@router.get("/grades/{code}/fees", name="numbers_grade_fees")
def grade_fees(code: str, page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(ADMIN)
    with page.uow(readonly=True) as uow:
        grade = _grade(uow, code)
    values = {"premium_fee": yuan_text(grade.premium_fee)}
    values["min_plan_fee"] = yuan_text(grade.min_plan_fee)
    return page.render("numbers/grade_fees.html", _base(page, "grades", grade=grade, values=values))


@router.post("/grades/{code}/fees", name="numbers_grade_fees_update")
def grade_fees_update(
    code: str,
    page: ConsolePage = Depends(console_page),
    premium_fee: Annotated[str, Form(max_length=20)] = "",
    min_plan_fee: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    page.actor.require(ADMIN)
    values = {"premium_fee": premium_fee, "min_plan_fee": min_plan_fee}
    with page.uow(readonly=True) as uow:
        grade = _grade(uow, code)  # 404 before anything
    try:
        with page.uow() as uow:
            numbers.update_grade_fees(
                uow,
                grade.code,
                premium_fee=parse_yuan(premium_fee, page.t(GRADE_LABELS["premium_fee"])),
                min_plan_fee=parse_yuan(min_plan_fee, page.t(GRADE_LABELS["min_plan_fee"])),
            )
            uow.commit()
    except DomainError as exc:
        context = _base(page, "grades", grade=grade, values=values, error=form_error(exc))
        return page.render("numbers/grade_fees.html", context, status_code=exc.status)
    url = page.request.url_for("numbers_grades").path
    return RedirectResponse(f"{url}?done=fees", status_code=303)


@router.get("/grades/export/{fmt}", name="numbers_grades_export")
def grades_export(fmt: str, page: ConsolePage = Depends(console_page)) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    with page.uow() as uow:
        found = numbers.list_grades(uow)
        audit_export(uow, "number_grades", fmt, len(found), {})
        uow.commit()
    rows: list[list[Cell]] = [
        [
            g.code,
            g.name_en if page.locale == "en" else g.name_zh,
            g.pattern,
            g.digits,
            g.premium_fee / 100,
            g.min_plan_fee / 100,
            g.priority,
        ]
        for g in found
    ]
    headers = [
        page.t(_("Code")),
        page.t(_("Grade")),
        page.t(_("Pattern")),
        page.t(GRADE_LABELS["digits"]),
        page.t(GRADE_LABELS["premium_fee"]),
        page.t(GRADE_LABELS["min_plan_fee"]),
        page.t(GRADE_LABELS["priority"]),
    ]
    return export_response(fmt, "number-grades", headers, rows, sheet=page.t(_("Number grades")))


# -- finding free numbers and reserving them -------------------------------------------


def _search(
    uow: UnitOfWork,
    page: ConsolePage,
    criteria: dict[str, str],
    *,
    limit: int,
    after: str | None,
) -> list[NumberOut]:
    kind = criteria["kind"]
    if kind and kind not in KINDS:
        raise ValidationError(_("Unknown number kind {kind}"), kind=kind[:20])
    return numbers.search_free(
        uow,
        criteria["region"] or page.actor.org_path,
        pattern=criteria["pattern"].strip() or None,
        ends_with=criteria["ends_with"].strip() or None,
        grade=criteria["grade"] or None,
        kind=kind or None,
        limit=limit,
        after=after or None,
    )


@router.get("/search", name="numbers_search")
def search(
    page: ConsolePage = Depends(console_page),
    region: Annotated[str, Query(max_length=255)] = "",
    pattern: Annotated[str, Query(max_length=32)] = "",
    ends_with: Annotated[str, Query(max_length=16)] = "",
    grade: Annotated[str, Query(max_length=40)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    criteria = {"region": region, "pattern": pattern, "ends_with": ends_with}
    criteria |= {"grade": grade, "kind": kind}
    found: list[NumberOut] = []
    error: FormError | None = None
    with page.uow(readonly=True) as uow:
        names = org_names(uow, page.locale)
        regions = _regions(uow)
        grade_names = _grade_names(uow, page.locale)
        try:
            found = _search(uow, page, criteria, limit=SEARCH_SIZE + 1, after=after)
        except ValidationError as exc:
            error = form_error(exc)
    context = _base(
        page,
        "search",
        criteria=criteria,
        results=found[:SEARCH_SIZE],
        more=found[SEARCH_SIZE - 1].value if len(found) > SEARCH_SIZE else None,
        after=after,
        regions=regions,
        region_name=name_of(names),
        grade_names=grade_names,
        error=error,
    )
    return page.render("numbers/search.html", context)


@router.get("/search/export/{fmt}", name="numbers_search_export")
def search_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    region: Annotated[str, Query(max_length=255)] = "",
    pattern: Annotated[str, Query(max_length=32)] = "",
    ends_with: Annotated[str, Query(max_length=16)] = "",
    grade: Annotated[str, Query(max_length=40)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The free numbers matching the search, up to ``SEARCH_EXPORT_MAX``."""
    require_format(fmt)
    page.actor.require(READ)
    criteria = {"region": region, "pattern": pattern, "ends_with": ends_with}
    criteria |= {"grade": grade, "kind": kind}
    found: list[NumberOut] = []
    with page.uow() as uow:
        names = org_names(uow, page.locale)
        grade_names = _grade_names(uow, page.locale)
        while len(found) < SEARCH_EXPORT_MAX:
            last = found[-1].value if found else None
            batch = _search(uow, page, criteria, limit=numbers.MAX_SEARCH, after=last)
            found.extend(batch)
            if len(batch) < numbers.MAX_SEARCH:
                break
        found = found[:SEARCH_EXPORT_MAX]
        audit_export(uow, "free_numbers", fmt, len(found), criteria)
        uow.commit()
    rows: list[list[Cell]] = [
        [
            n.value,
            page.t(KINDS[n.kind]),
            names.get(n.org_path, n.org_path),
            grade_names.get(n.grade_code, n.grade_code),
            n.premium_fee / 100,
            n.min_plan_fee / 100,
        ]
        for n in found
    ]
    headers = [
        page.t(_("Number")),
        page.t(_("Kind")),
        page.t(_("Region")),
        page.t(_("Grade")),
        page.t(GRADE_LABELS["premium_fee"]),
        page.t(GRADE_LABELS["min_plan_fee"]),
    ]
    return export_response(fmt, "free-numbers", headers, rows, sheet=page.t(_("Free numbers")))


def _reserve_context(
    page: ConsolePage, number: str, values: dict[str, str], error: FormError | None
) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        shown = numbers.get(uow, number)
        grade_names = _grade_names(uow, page.locale)
    default_minutes = page.request.app.state.settings.number_reservation_minutes
    return _base(
        page,
        "search",
        number=shown,
        grade_names=grade_names,
        values=values,
        default_minutes=default_minutes,
        max_minutes=numbers.MAX_RESERVATION_MINUTES,
        error=error,
    )


@router.get("/reserve", name="numbers_reserve_form")
def reserve_form(
    page: ConsolePage = Depends(console_page),
    number: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    page.actor.require(RESERVE)
    context = _reserve_context(page, number, {"holder": "", "minutes": ""}, None)
    return page.render("numbers/reserve.html", context)


@router.post("/reserve", name="numbers_reserve")
def reserve(
    page: ConsolePage = Depends(console_page),
    number: Annotated[str, Form(max_length=32)] = "",
    holder: Annotated[str, Form(max_length=200)] = "",
    minutes: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    page.actor.require(RESERVE)
    values = {"holder": holder, "minutes": minutes}
    try:
        with page.uow() as uow:
            wanted = parse_count(minutes, page.t(_("Minutes"))) if minutes.strip() else None
            reserved = numbers.reserve(uow, number, holder.strip(), wanted)
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        context = _reserve_context(page, number, values, form_error(exc))
        return page.render("numbers/reserve.html", context, status_code=exc.status)
    url = page.request.url_for("numbers_reservations").path
    return RedirectResponse(f"{url}?done=reserved&number={reserved.value}", status_code=303)


# -- reservations and quarantine -------------------------------------------------------


def _holder_conditions(holder: str) -> tuple[Condition, ...]:
    return (Condition("holder", Op.eq, (holder.strip(),)),) if holder.strip() else ()


@router.get("/reservations", name="numbers_reservations")
def reservations(
    page: ConsolePage = Depends(console_page),
    holder: Annotated[str, Query(max_length=100)] = "",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
    done: Annotated[str, Query(max_length=20)] = "",
    number: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    page.actor.require(READ)
    context = _reservations_context(page, holder, p, done, number)
    return page.render("numbers/reservations.html", context)


def _reservations_context(
    page: ConsolePage, holder: str, p: int, done: str, number: str, error: FormError | None = None
) -> dict[str, Any]:
    query = ListQuery(_holder_conditions(holder), (p - 1) * PAGE_SIZE, PAGE_SIZE)
    done_message: str | None = None
    done_params: dict[str, Any] = {}
    with page.uow(readonly=True) as uow:
        found, total = numbers.list_reservations(uow, query)
        grade_names = _grade_names(uow, page.locale)
        if done in ("reserved", "cancelled") and number:
            try:
                shown = numbers.get(uow, number)
            except (NotFound, ValidationError):
                shown = None
            if shown is not None:
                done_message = _DONE[done]
                done_params = {"number": shown.value, "holder": shown.holder or ""}
                done_params["until"] = ""
                if shown.reserved_until is not None:
                    local = shown.reserved_until.astimezone(page.zone)
                    done_params["until"] = local.strftime("%Y-%m-%d %H:%M")
    context = _base(
        page,
        "reservations",
        reservations=found,
        total=total,
        holder=holder,
        p=p,
        has_next=p * PAGE_SIZE < total,
        filters={"holder": holder},
        grade_names=grade_names,
        done=done_message,
        done_params=done_params,
        error=error,
    )
    return context


@router.post("/reservations/cancel", name="numbers_cancel")
def cancel(
    page: ConsolePage = Depends(console_page),
    number: Annotated[str, Form(max_length=32)] = "",
    holder: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            cancelled = numbers.cancel_reservation(uow, number, holder)
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        context = _reservations_context(page, "", 1, "", "", form_error(exc))
        return page.render("numbers/reservations.html", context, status_code=exc.status)
    url = page.request.url_for("numbers_reservations").path
    return RedirectResponse(f"{url}?done=cancelled&number={cancelled.value}", status_code=303)


@router.get("/reservations/export/{fmt}", name="numbers_reservations_export")
def reservations_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    holder: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    local = page.local_cell
    with page.uow() as uow:
        names = org_names(uow, page.locale)
        found = _all(lambda q: numbers.list_reservations(uow, q), _holder_conditions(holder))
        audit_export(uow, "number_reservations", fmt, len(found), {"holder": holder})
        uow.commit()
    rows = [
        [n.value, names.get(n.org_path, n.org_path), n.holder, local(n.reserved_until)]
        for n in found
    ]
    headers = [
        page.t(_("Number")),
        page.t(_("Region")),
        page.t(_("Holder")),
        page.t(_("Reserved until")),
    ]
    return export_response(
        fmt, "number-reservations", headers, rows, sheet=page.t(_("Reservations"))
    )


@router.get("/quarantine", name="numbers_quarantine")
def quarantine(
    page: ConsolePage = Depends(console_page),
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    page.actor.require(READ)
    with page.uow(readonly=True) as uow:
        found, total = numbers.list_quarantine(uow, ListQuery((), (p - 1) * PAGE_SIZE, PAGE_SIZE))
        names = org_names(uow, page.locale)
    context = _base(
        page,
        "quarantine",
        numbers=found,
        total=total,
        p=p,
        has_next=p * PAGE_SIZE < total,
        region_name=name_of(names),
    )
    return page.render("numbers/quarantine.html", context)


@router.get("/quarantine/export/{fmt}", name="numbers_quarantine_export")
def quarantine_export(fmt: str, page: ConsolePage = Depends(console_page)) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    local = page.local_cell
    with page.uow() as uow:
        names = org_names(uow, page.locale)
        found = _all(lambda q: numbers.list_quarantine(uow, q), ())
        audit_export(uow, "number_quarantine", fmt, len(found), {})
        uow.commit()
    rows = [[n.value, names.get(n.org_path, n.org_path), local(n.quarantine_until)] for n in found]
    headers = [page.t(_("Number")), page.t(_("Region")), page.t(_("Free again on"))]
    return export_response(fmt, "number-quarantine", headers, rows, sheet=page.t(_("Quarantine")))
