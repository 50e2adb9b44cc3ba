"""Console pages of the kiosk fleet 自助终端: the fleet grid (a tile per terminal coloured
by state, per site), a terminal's page (devices, cash box, versions, alarms, commands,
collections, 30 days of availability, journal reconciliations), alarms with acknowledge
and clear, cash collections and finance exceptions, software versions, and the fleet's
availability chart.

Templates: ``src/teleserve/web/templates/terminals/``. Every read and write goes through
the terminals services as the logged-in actor, so permissions and scoping are theirs:
``terminals.read`` to see the fleet of one's subtree (another organisation's terminal is
a 404 page), ``terminals.write`` for alarms, ``terminals.command`` for remote commands,
``payments.reconcile`` to resolve a finance exception. A refused form comes back with
the service's message; nothing has changed. Charts are drawn by ``static/dashboard.js``
from JSON the page embeds, and every chart is also a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import RedirectResponse, Response

from teleserve.core.errors import DomainError, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import alarms, availability, cash, fleet, journal
from teleserve.terminals import service as terminals
from teleserve.terminals.fleet import TileState
from teleserve.terminals.fleet_models import (
    SEVERITY_RANK,
    AlarmStatus,
    CommandType,
    ExceptionStatus,
    Severity,
)
from teleserve.terminals.fleet_schemas import AvailabilityOut
from teleserve.web.console.admin import form_error, name_of, org_names
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, Cell, audit_export, export_response, require_format

router = APIRouter(prefix="/terminals")

READ = "terminals.read"
WRITE = "terminals.write"
COMMAND = "terminals.command"
RECONCILE = "payments.reconcile"
CHART_DAYS = 30
LIST_SIZE = 200
EXPORT_MAX = 1000  # the services' own ceiling for one list

STATES = {
    TileState.ok: _("In service"),
    TileState.warning: _("Warning"),
    TileState.fault: _("Fault or alarm"),
    TileState.not_reporting: _("Not reporting"),
    TileState.out_of_service: _("Out of service"),
    TileState.disabled: _("Disabled"),
}
TERMINAL_STATUSES = {
    "in_service": _("In service"),
    "out_of_service": _("Out of service"),
    "disabled": _("Disabled"),
    "decommissioned": _("Decommissioned"),
}
ALARM_STATUSES: dict[str, str] = {
    AlarmStatus.open.value: _("Open"),
    AlarmStatus.acknowledged.value: _("Acknowledged"),
    AlarmStatus.cleared.value: _("Cleared"),
}
# The alarm list's status filter: "live" (open or acknowledged) is the default.
ALARM_FILTERS: dict[str, str] = {"live": _("Live"), **ALARM_STATUSES, "all": _("All")}
SEVERITIES = {
    "critical": _("Critical"),
    "major": _("Major"),
    "minor": _("Minor"),
    "warning": _("Warning"),
}
COMMAND_TYPES = {
    CommandType.restart: _("Restart"),
    CommandType.out_of_service: _("Show out of service"),
    CommandType.in_service: _("Back in service"),
    CommandType.reload_config: _("Reload configuration"),
}
COMMAND_STATUSES = {
    "pending": _("Pending"),
    "sent": _("Sent"),
    "done": _("Done"),
    "failed": _("Failed"),
    "cancelled": _("Cancelled"),
}
EXCEPTION_KINDS = {
    "surplus": _("Surplus"),
    "shortage": _("Shortage"),
    "late_deposit": _("Deposit after collection"),
}
EXCEPTION_STATUSES = {ExceptionStatus.open: _("Open"), ExceptionStatus.resolved: _("Resolved")}

_DONE = {
    "queued": _("The command has been queued; the terminal receives it with its next report."),
    "cancelled": _("The command has been cancelled."),
    "acknowledged": _("The alarm has been acknowledged."),
    "cleared": _("The alarm has been cleared."),
    "resolved": _("The finance exception has been resolved."),
}


def _base(page: ConsolePage, tab: str, **context: Any) -> dict[str, Any]:
    return {
        "tab": tab,
        "states": STATES,
        "terminal_statuses": TERMINAL_STATUSES,
        "alarm_statuses": ALARM_STATUSES,
        "severities": SEVERITIES,
        "command_types": COMMAND_TYPES,
        "command_statuses": COMMAND_STATUSES,
        "exception_kinds": EXCEPTION_KINDS,
        "exception_statuses": EXCEPTION_STATUSES,
        "formats": FORMATS,
        "can_write": page.actor.can(WRITE),
        "can_command": page.actor.can(COMMAND),
        "can_reconcile": page.actor.can(RECONCILE),
        "error": None,
        "done": None,
        **context,
    }


def _site_code(org_path: str) -> str:
    """A terminal's site code: the last segment of its org path (paths are built from
    unit codes)."""
    return org_path.rstrip("/").rsplit("/", 1)[-1]


def _percent(share: float) -> float:
    return round(share * 100, 1)


def _chart(
    key: str, title: str, categories: list[str], series: list[tuple[str, list[float]]]
) -> dict[str, Any]:
    """A bar chart in the shape ``static/dashboard.js`` draws (no money)."""
    return {
        "key": key,
        "kind": "bar",
        "money": False,
        "title": title,
        "categories": categories,
        "series": [{"name": name, "values": values} for name, values in series],
    }


K = TypeVar("K", date, str)


def _shares_by(
    rows: Iterable[AvailabilityOut], keep: set[str], key: Callable[[AvailabilityOut], K]
) -> list[tuple[K, float]]:
    """The availability of the terminals in ``keep`` together, per ``key`` (a day, a
    terminal), each terminal-day weighted by its time in service."""
    groups: dict[K, list[AvailabilityOut]] = {}
    for row in rows:
        if row.terminal_id in keep:
            groups.setdefault(key(row), []).append(row)
    shares = ((k, availability.weighted_share(v)) for k, v in sorted(groups.items()))
    return [(k, share) for k, share in shares if share is not None]


# -- the fleet grid --------------------------------------------------------------------


@router.get("", name="fleet_grid")
def grid(
    page: ConsolePage = Depends(console_page),
    site: Annotated[str, Query(max_length=64)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    if state and state not in {s.value for s in TileState}:
        raise ValidationError(_("Unknown tile state {state}"), state=state[:20])
    with page.uow(readonly=True) as uow:
        names = org_names(uow, page.locale)
        tiles = fleet.fleet_tiles(uow, site=site or None)
        all_sites = sorted({t.terminal.org_path for t in fleet.fleet_tiles(uow)}) if site else None
    counts = Counter(t.state.value for t in tiles)
    shown = [t for t in tiles if not state or t.state.value == state]
    sites: dict[str, list[fleet.FleetTile]] = {}
    for tile in shown:
        sites.setdefault(tile.terminal.org_path, []).append(tile)
    site_paths = all_sites if all_sites is not None else sorted(sites)
    context = _base(
        page,
        "grid",
        sites=sorted(sites.items()),
        site_choices=[(_site_code(p), p) for p in site_paths],
        site=site,
        site_path=next(iter(sites), None) if site else None,
        state=state,
        counts=counts,
        total=len(tiles),
        site_name=name_of(names),
        site_code=_site_code,
    )
    return page.render("terminals/grid.html", context)


# -- one terminal ----------------------------------------------------------------------


def _detail_context(
    page: ConsolePage, uow: UnitOfWork, terminal_id: str, **extra: Any
) -> dict[str, Any]:
    terminal = terminals.get_terminal(uow, terminal_id)
    state = fleet.device_state(uow, terminal_id)
    live = alarms.list_alarms(
        uow,
        terminal_id=terminal_id,
        status=[AlarmStatus.open.value, AlarmStatus.acknowledged.value],
        limit=100,
    )
    worst = max((a.severity for a in live), key=lambda s: SEVERITY_RANK[Severity(s)], default=None)
    last = page.today()
    first = last - timedelta(days=CHART_DAYS - 1)
    days = availability.daily_availability(uow, first, last, terminal_id=terminal_id)
    names = org_names(uow, page.locale)
    chart = _chart(
        "availability",
        page.t(_("Availability, last {days} days (%)"), days=CHART_DAYS),
        [d.day.isoformat() for d in days],
        [(page.t(_("Availability (%)")), [_percent(d.share) for d in days])],
    )
    return _base(
        page,
        "grid",
        terminal=terminal,
        tile=fleet.tile_state(terminal, state, worst),
        state=state,
        config=fleet.terminal_config(uow, terminal_id),
        live_alarms=live,
        commands=fleet.list_commands(uow, terminal_id=terminal_id, limit=20),
        collections=cash.list_collections(uow, terminal_id=terminal_id, limit=10),
        reconciliations=journal.list_reconciliations(uow, terminal_id=terminal_id, limit=10),
        days=days,
        chart=chart,
        chart_data=[chart],
        site_name=name_of(names),
        **extra,
    )


@router.get("/kiosks/{terminal_id}", name="terminal_detail")
def detail(
    terminal_id: str,
    page: ConsolePage = Depends(console_page),
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    with page.uow(readonly=True) as uow:
        context = _detail_context(page, uow, terminal_id, done=_DONE.get(done))
    return page.render("terminals/detail.html", context)


def _detail_error(page: ConsolePage, terminal_id: str, exc: DomainError) -> Response:
    if isinstance(exc, NotFound):
        raise exc
    with page.uow(readonly=True) as uow:
        context = _detail_context(page, uow, terminal_id, error=form_error(exc))
    return page.render("terminals/detail.html", context, status_code=exc.status)


def _to_detail(page: ConsolePage, terminal_id: str, done: str) -> Response:
    url = page.request.url_for("terminal_detail", terminal_id=terminal_id).path
    return RedirectResponse(f"{url}?done={done}", status_code=303)


@router.post("/kiosks/{terminal_id}/commands", name="terminal_command_queue")
def queue_command(
    terminal_id: str,
    page: ConsolePage = Depends(console_page),
    command_type: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            fleet.queue_command(uow, terminal_id, command_type)
            uow.commit()
    except DomainError as exc:
        return _detail_error(page, terminal_id, exc)
    return _to_detail(page, terminal_id, "queued")


@router.post("/kiosks/{terminal_id}/commands/{command_id}/cancel", name="terminal_command_cancel")
def cancel_command(
    terminal_id: str,
    command_id: str,
    page: ConsolePage = Depends(console_page),
    reason: Annotated[str, Form(max_length=600)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            fleet.cancel_command(uow, command_id, reason)
            uow.commit()
    except DomainError as exc:
        return _detail_error(page, terminal_id, exc)
    return _to_detail(page, terminal_id, "cancelled")


# -- alarms ----------------------------------------------------------------------------


def _alarm_statuses(status: str) -> list[str] | None:
    if status in ("", "live"):
        return [AlarmStatus.open.value, AlarmStatus.acknowledged.value]
    if status == "all":
        return None
    if status not in {s.value for s in AlarmStatus}:
        raise ValidationError(_("Unknown alarm status {status}"), status=status[:20])
    return [status]


def _alarms_context(page: ConsolePage, status: str, terminal: str, **extra: Any) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        found = alarms.list_alarms(
            uow,
            terminal_id=terminal.strip() or None,
            status=_alarm_statuses(status),
            limit=LIST_SIZE,
        )
    return _base(
        page,
        "alarms",
        alarms=found,
        status=status or "live",
        terminal=terminal,
        alarm_filters=ALARM_FILTERS,
        filters={"status": status or "live", "terminal": terminal},
        limit=LIST_SIZE,
        **extra,
    )


@router.get("/alarms", name="fleet_alarms")
def alarm_list(
    page: ConsolePage = Depends(console_page),
    status: Annotated[str, Query(max_length=20)] = "",
    terminal: Annotated[str, Query(max_length=16)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    context = _alarms_context(page, status, terminal, done=_DONE.get(done))
    return page.render("terminals/alarms.html", context)


def _alarm_action(
    page: ConsolePage,
    alarm_id: str,
    note: str,
    back: str,
    act: Callable[[UnitOfWork, str, str], Any],
    done: str,
) -> Response:
    try:
        with page.uow() as uow:
            changed = act(uow, alarm_id, note)
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        if back:
            return _detail_error(page, back, exc)
        context = _alarms_context(page, "", "", error=form_error(exc))
        return page.render("terminals/alarms.html", context, status_code=exc.status)
    if back:
        return _to_detail(page, changed.terminal_id, done)
    url = page.request.url_for("fleet_alarms").path
    return RedirectResponse(f"{url}?done={done}", status_code=303)


@router.post("/alarms/{alarm_id}/acknowledge", name="fleet_alarm_acknowledge")
def acknowledge(
    alarm_id: str,
    page: ConsolePage = Depends(console_page),
    note: Annotated[str, Form(max_length=600)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    return _alarm_action(page, alarm_id, note, back, alarms.acknowledge_alarm, "acknowledged")


@router.post("/alarms/{alarm_id}/clear", name="fleet_alarm_clear")
def clear(
    alarm_id: str,
    page: ConsolePage = Depends(console_page),
    note: Annotated[str, Form(max_length=600)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    return _alarm_action(page, alarm_id, note, back, alarms.clear_alarm, "cleared")


@router.get("/alarms/export/{fmt}", name="fleet_alarms_export")
def alarms_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    status: Annotated[str, Query(max_length=20)] = "",
    terminal: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    local = page.local_cell
    with page.uow() as uow:
        found = alarms.list_alarms(
            uow,
            terminal_id=terminal.strip() or None,
            status=_alarm_statuses(status),
            limit=EXPORT_MAX,
        )
        criteria = {"status": status or "live", "terminal": terminal}
        audit_export(uow, "terminal_alarms", fmt, len(found), criteria)
        uow.commit()
    rows: list[list[Cell]] = [
        [
            a.terminal_id,
            a.code,
            a.device,
            page.t(SEVERITIES.get(a.severity, a.severity)),
            page.t(ALARM_STATUSES.get(a.status, a.status)),
            a.occurrences,
            a.escalation_level,
            local(a.first_seen_at),
            local(a.last_raised_at),
            local(a.acknowledged_at),
            local(a.cleared_at),
            a.message,
            a.note,
        ]
        for a in found
    ]
    headers = [
        page.t(_("Terminal")),
        page.t(_("Code")),
        page.t(_("Device")),
        page.t(_("Severity")),
        page.t(_("Status")),
        page.t(_("Occurrences")),
        page.t(_("Escalation level")),
        page.t(_("First seen")),
        page.t(_("Last raised")),
        page.t(_("Acknowledged")),
        page.t(_("Cleared")),
        page.t(_("Message")),
        page.t(_("Note")),
    ]
    return export_response(fmt, "terminal-alarms", headers, rows, sheet=page.t(_("Alarms")))


# -- cash: collections and finance exceptions ------------------------------------------


def _since(text: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            _("{value} is not a date (year-month-day)"), value=text.strip()[:20]
        ) from None


def _exception_status(value: str) -> str | None:
    if value in ("", "open"):
        return ExceptionStatus.open.value
    if value == "all":
        return None
    if value != ExceptionStatus.resolved.value:
        raise ValidationError(_("Unknown exception status {status}"), status=value[:20])
    return value


def _cash_context(
    page: ConsolePage, terminal: str, since: str, exceptions: str, **extra: Any
) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        boxes = fleet.boxes_in_place(uow, terminal_id=terminal.strip() or None)
        names = org_names(uow, page.locale)
        collections = cash.list_collections(
            uow, terminal_id=terminal.strip() or None, since=_since(since), limit=LIST_SIZE
        )
        found = cash.list_exceptions(
            uow,
            terminal_id=terminal.strip() or None,
            status=_exception_status(exceptions),
            limit=LIST_SIZE,
        )
    return _base(
        page,
        "cash",
        boxes=boxes,
        site_name=name_of(names),
        collections=collections,
        exceptions=found,
        terminal=terminal,
        since=since,
        exception_filter=exceptions or "open",
        filters={"terminal": terminal, "since": since},
        **extra,
    )


@router.get("/cash", name="fleet_cash")
def cash_page(
    page: ConsolePage = Depends(console_page),
    terminal: Annotated[str, Query(max_length=16)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    exceptions: Annotated[str, Query(max_length=20)] = "",
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    page.actor.require(READ)
    context = _cash_context(page, terminal, since, exceptions, done=_DONE.get(done))
    return page.render("terminals/cash.html", context)


@router.post("/cash/exceptions/{exception_id}/resolve", name="fleet_exception_resolve")
def resolve_exception(
    exception_id: str,
    page: ConsolePage = Depends(console_page),
    note: Annotated[str, Form(max_length=600)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            cash.resolve_exception(uow, exception_id, note)
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        context = _cash_context(page, "", "", "", error=form_error(exc))
        return page.render("terminals/cash.html", context, status_code=exc.status)
    url = page.request.url_for("fleet_cash").path
    return RedirectResponse(f"{url}?done=resolved", status_code=303)


def _notes_text(notes: Iterable[Any]) -> str:
    return " ".join(f"{n.value // 100}×{n.count}" for n in notes)


@router.get("/cash/export/{fmt}", name="fleet_collections_export")
def collections_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    terminal: Annotated[str, Query(max_length=16)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    local = page.local_cell
    with page.uow() as uow:
        found = cash.list_collections(
            uow, terminal_id=terminal.strip() or None, since=_since(since), limit=EXPORT_MAX
        )
        criteria = {"terminal": terminal, "since": since}
        audit_export(uow, "terminal_collections", fmt, len(found), criteria)
        uow.commit()
    rows: list[list[Cell]] = [
        [
            c.terminal_id,
            c.box_id,
            c.new_box_id,
            c.operator_id,
            local(c.collected_at),
            c.business_date,
            c.expected_amount / 100,
            c.counted_amount / 100,
            c.discrepancy / 100,
            c.deposits,
            _notes_text(c.counted),
        ]
        for c in found
    ]
    headers = [
        page.t(_("Terminal")),
        page.t(_("Box")),
        page.t(_("New box")),
        page.t(_("Operator")),
        page.t(_("Collected")),
        page.t(_("Business date")),
        page.t(_("Expected (yuan)")),
        page.t(_("Counted (yuan)")),
        page.t(_("Difference (yuan)")),
        page.t(_("Payments")),
        page.t(_("Counted notes (yuan × count)")),
    ]
    return export_response(
        fmt, "terminal-collections", headers, rows, sheet=page.t(_("Cash collections"))
    )


# -- software versions and availability ------------------------------------------------


@router.get("/versions", name="fleet_versions")
def versions(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(READ)
    with page.uow(readonly=True) as uow:
        tiles = fleet.fleet_tiles(uow)
        published = fleet.list_config_versions(uow, limit=20)
    by_version: dict[str, list[str]] = {}
    for tile in tiles:
        by_version.setdefault(tile.terminal.software_version, []).append(tile.terminal.terminal_id)
    summary = sorted(by_version.items(), key=lambda item: (-len(item[1]), item[0]))
    context = _base(page, "versions", summary=summary, total=len(tiles), published=published)
    return page.render("terminals/versions.html", context)


@router.get("/availability", name="fleet_availability")
def availability_page(
    page: ConsolePage = Depends(console_page),
    site: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    page.actor.require(READ)
    last = page.today()
    first = last - timedelta(days=CHART_DAYS - 1)
    with page.uow(readonly=True) as uow:
        names = org_names(uow, page.locale)
        tiles = fleet.fleet_tiles(uow, site=site or None)
        sites = sorted({t.terminal.org_path for t in fleet.fleet_tiles(uow)})
        rows = availability.daily_availability(uow, first, last, site=site or None)
    keep = {t.terminal.terminal_id for t in tiles}
    daily = _shares_by(rows, keep, lambda row: row.day)
    terminal_means = [
        (terminal_id, _percent(share))
        for terminal_id, share in _shares_by(rows, keep, lambda row: row.terminal_id)
    ]
    chart = _chart(
        "fleet_availability",
        page.t(_("Fleet availability, last {days} days (%)"), days=CHART_DAYS),
        [day.isoformat() for day, _mean in daily],
        [(page.t(_("Availability (%)")), [_percent(mean) for _day, mean in daily])],
    )
    context = _base(
        page,
        "availability",
        chart=chart,
        chart_data=[chart],
        daily=[(day, _percent(mean)) for day, mean in daily],
        terminal_means=terminal_means,
        site=site,
        site_choices=[(_site_code(p), p) for p in sites],
        site_name=name_of(names),
        first=first,
        last=last,
    )
    return page.render("terminals/availability.html", context)
