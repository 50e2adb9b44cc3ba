"""Console pages of the customers domain: search, the customer 360° page, exports.

Templates: ``src/teleserve/web/templates/customers/``. Every read goes through the
domains' services as the logged-in actor, so scoping and permissions are theirs: another
organisation's customer is ``NotFound`` there and a 404 page here. A panel whose service
refuses the actor (a cashier has no ``inventory.read``...) says so instead of failing the
whole page.

Search takes one box and recognises what was typed (``classify``): an 18-character
resident ID number (exact, through the blind index), a customer number (``C`` and
digits), a service number (digits, spaces, dashes, an optional ``+``), otherwise the
beginning of a name. A select lets the user say which one it is (a passport number is
"ID number" although it has letters).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import Response

from teleserve.catalog import service as catalog
from teleserve.core.audit import AuditEntry
from teleserve.core.errors import NotFound, PermissionDenied, ValidationError
from teleserve.core.i18n import _
from teleserve.core.masking import mask_id_number, mask_name, mask_phone
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.schemas import CustomerDetail, CustomerSummary
from teleserve.inventory import service as inventory
from teleserve.inventory.schemas import LineKind, SubscriptionOut
from teleserve.payments import service as payments
from teleserve.payments.schemas import AccountBalance, PaymentView
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, audit_export, export_response, require_format

router = APIRouter(prefix="/customers")

PAGE_SIZE = 20
TRAIL_SIZE = 20
PAYMENTS_SHOWN = 20
EXPORT_MAX = 10_000  # rows in one export: a bigger list belongs to a report
_FETCH = 200  # customers.service.SEARCH_LIMIT_MAX: one query's page during an export
_RELATED_PAYMENTS = 200  # payments per account whose audit records join the trail

KINDS = {
    "auto": _("Anything"),
    "name": _("Name"),
    "service_number": _("Service number"),
    "id_number": _("ID number"),
    "number": _("Customer number"),
}

# Codes shown in pages, with their translations.
LABELS = {
    "individual": _("Individual"),
    "organisation": _("Organisation"),
    "active": _("Active"),
    "closed": _("Closed"),
    "pending": _("Pending"),
    "terminated": _("Terminated"),
    "prepaid": _("Prepaid"),
    "postpaid": _("Postpaid"),
    "mobile": _("Mobile"),
    "email": _("E-mail"),
    "address": _("Address"),
    "fixed_line": _("Fixed line"),
    "broadband": _("Broadband"),
    "male": _("Male"),
    "female": _("Female"),
    "resident_id": _("Resident ID card"),
    "hmt_residence_permit": _("Residence permit (Hong Kong, Macao, Taiwan)"),
    "passport": _("Passport"),
    "hk_macau_permit": _("Mainland travel permit (Hong Kong, Macao)"),
    "taiwan_permit": _("Mainland travel permit (Taiwan)"),
    "foreign_permanent_resident": _("Foreign permanent resident ID card"),
    "credit": _("Credit (arrears)"),
    "lost": _("Lost"),
    "keep_number": _("Keep number"),
    "admin": _("Administrative"),
    "fraud": _("Fraud"),
    "completed": _("Completed"),
    "held": _("Held"),
    "reversed": _("Reversed"),
    "kiosk_cash": _("Kiosk (cash)"),
    "kiosk_card": _("Kiosk (card)"),
    "counter_cash": _("Counter (cash)"),
    "web": _("Web"),
    "api": _("API"),
    "staff": _("Staff"),
    "api_client": _("API client"),
    "terminal": _("Terminal"),
    "customer": _("Customer"),
    "system": _("System"),
}

_ID_NUMBER = re.compile(r"^\d{17}[\dXx]$")
_CUSTOMER_NUMBER = re.compile(r"^[Cc]\d{8,}$")
_SERVICE_NUMBER = re.compile(r"^\+?[\d\s-]{3,32}$")

T = TypeVar("T")


@dataclass(frozen=True)
class Panel(Generic[T]):
    """A part of the 360° page: its data, or why it cannot be shown to this actor."""

    value: T | None
    refusal: str | None = None


def _panel(read: Callable[[], T]) -> Panel[T]:
    try:
        return Panel(read())
    except PermissionDenied:
        return Panel(None, _("You do not have permission to see this"))


def classify(query: str, kind: str = "auto") -> tuple[str, str]:
    """(criterion, value) for the one search box; ``kind`` other than ``auto`` wins."""
    text = " ".join(query.split())
    if kind not in KINDS:
        raise ValidationError(_("Unknown search kind {kind}"), kind=kind[:20])
    if kind != "auto":
        chosen = kind
    elif _ID_NUMBER.match(text):
        chosen = "id_number"
    elif _CUSTOMER_NUMBER.match(text):
        chosen = "number"
    elif _SERVICE_NUMBER.match(text):
        chosen = "service_number"
    else:
        chosen = "name"
    if chosen == "service_number":
        text = re.sub(r"[\s-]", "", text)
        if text.startswith("+86"):
            text = text[3:]
    return chosen, text


def _masked_criterion(criterion: str, value: str) -> str:
    """The search as it may appear in the audit log."""
    if criterion == "id_number":
        return mask_id_number(value)
    if criterion == "service_number":
        return mask_phone(value)
    if criterion == "name":
        return mask_name(value)
    return value


def _search(
    uow: UnitOfWork, criterion: str, value: str, *, limit: int, offset: int
) -> list[CustomerSummary]:
    return customers.search_customers(uow, limit=limit, offset=offset, **{criterion: value})


# -- search ----------------------------------------------------------------------------


@router.get("", name="customer_search")
def search(
    page: ConsolePage = Depends(console_page),
    q: Annotated[str, Query(max_length=100)] = "",
    kind: Annotated[str, Query(max_length=20)] = "auto",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    page.actor.require(customers.READ)
    results: list[CustomerSummary] = []
    error: str | None = None
    error_params: dict[str, Any] = {}
    has_next = False
    searched = bool(q.strip())
    if searched:
        try:
            criterion, value = classify(q, kind)
            with page.uow(readonly=True) as uow:
                found = _search(
                    uow, criterion, value, limit=PAGE_SIZE + 1, offset=(p - 1) * PAGE_SIZE
                )
            has_next = len(found) > PAGE_SIZE
            results = found[:PAGE_SIZE]
        except ValidationError as exc:
            error, error_params = exc.message, exc.params
    context = {
        "q": q,
        "kind": kind if kind in KINDS else "auto",
        "kinds": KINDS,
        "labels": LABELS,
        "results": results,
        "searched": searched,
        "error": error,
        "error_params": error_params,
        "p": p,
        "has_next": has_next,
        "formats": FORMATS,
    }
    if page.htmx and page.request.headers.get("HX-Target") == "search-results":
        return page.render("customers/_results.html", context)
    return page.render("customers/search.html", context)


@router.get("/export/{fmt}", name="customer_export")
def export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    q: Annotated[str, Query(max_length=100)] = "",
    kind: Annotated[str, Query(max_length=20)] = "auto",
) -> Response:
    """The whole result of a search (up to ``EXPORT_MAX`` rows), masked as on screen."""
    require_format(fmt)
    page.actor.require(customers.READ)
    criterion, value = classify(q, kind)
    zone = ZoneInfo(page.request.app.state.settings.timezone)
    rows: list[list[Any]] = []
    with page.uow() as uow:
        offset = 0
        while len(rows) < EXPORT_MAX:
            batch = _search(uow, criterion, value, limit=_FETCH, offset=offset)
            rows.extend(
                [
                    c.number,
                    c.name,
                    page.t(LABELS.get(c.category, c.category)),
                    page.t(LABELS.get(c.status, c.status)),
                    c.created_at.astimezone(zone).replace(tzinfo=None),  # local time
                ]
                for c in batch
            )
            if len(batch) < _FETCH:
                break
            offset += _FETCH
        rows = rows[:EXPORT_MAX]
        audit_export(
            uow,
            "customers",
            fmt,
            len(rows),
            {"kind": criterion, "query": _masked_criterion(criterion, value)},
        )
        uow.commit()
    headers = [
        page.t(_("Customer number")),
        page.t(_("Name")),
        page.t(_("Category")),
        page.t(_("Status")),
        page.t(_("Registered")),
    ]
    return export_response(fmt, "customers", headers, rows, sheet=page.t(_("Customers")))


# -- the 360° page ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccountPanel:
    id: str
    number: str
    kind: str
    status: str
    credit_limit: int
    bill_cycle_day: int
    balance: Panel[AccountBalance]


@dataclass(frozen=True)
class LineView:
    line: SubscriptionOut
    number: str  # masked for mobile numbers
    plan_name: str
    vas_names: tuple[str, ...]


def _offering_name(uow: UnitOfWork, code: str, locale: str, cache: dict[str, str]) -> str:
    if code not in cache:
        try:
            offering = catalog.get_offering(uow, code)
            cache[code] = offering.name_en if locale == "en" else offering.name_zh
        except NotFound:
            cache[code] = code
    return cache[code]


def _lines(uow: UnitOfWork, customer_id: str, locale: str) -> list[LineView]:
    names: dict[str, str] = {}
    views = []
    for line in inventory.list_for_customer(uow, customer_id):
        number = line.service_number
        if line.kind is LineKind.mobile:
            number = mask_phone(number)
        views.append(
            LineView(
                line=line,
                number=number,
                plan_name=_offering_name(uow, line.plan_code, locale, names),
                vas_names=tuple(_offering_name(uow, v, locale, names) for v in line.vas_codes),
            )
        )
    return views


def _balance(uow: UnitOfWork, account_id: str) -> Panel[AccountBalance]:
    try:
        return _panel(lambda: payments.account_balance(uow, account_id))
    except NotFound:
        return Panel(None, _("No ledger account yet"))


def _payments(uow: UnitOfWork, account_ids: list[str], limit: int) -> list[PaymentView]:
    found: list[PaymentView] = []
    for account_id in account_ids:
        found.extend(payments.list_account_payments(uow, account_id, limit=limit))
    found.sort(key=lambda p: (p.created_at, p.id), reverse=True)
    return found


def _trail(
    uow: UnitOfWork, customer: CustomerDetail, lines: Panel[list[LineView]], offset: int
) -> Panel[list[AuditEntry]]:
    """The customer's audit trail, with the records of its lines and recent payments
    (those the actor may see: the ids come from the scoped services)."""
    related: list[tuple[str, str]] = []
    for view in lines.value or []:
        related.append(("subscription", view.line.id))
    if uow.actor.can("payments.read"):
        account_ids = [a.id for a in customer.accounts]
        related.extend(("payment", p.id) for p in _payments(uow, account_ids, _RELATED_PAYMENTS))
    return _panel(
        lambda: customers.audit_trail(
            uow, customer.id, related=related, limit=TRAIL_SIZE + 1, offset=offset
        )
    )


def _customer_context(
    page: ConsolePage, customer_id: str, *, revealed: dict[str, str] | None = None
) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        customer = customers.get_customer(uow, customer_id)
        accounts = [
            AccountPanel(
                id=a.id,
                number=a.number,
                kind=a.kind,
                status=a.status,
                credit_limit=a.credit_limit,
                bill_cycle_day=a.bill_cycle_day,
                balance=_balance(uow, a.id),
            )
            for a in customer.accounts
        ]
        account_numbers = {a.id: a.number for a in customer.accounts}
        lines = _panel(lambda: _lines(uow, customer.id, page.locale))
        recent = _panel(lambda: _payments(uow, list(account_numbers), PAYMENTS_SHOWN))
        if recent.value is not None:
            recent = Panel(recent.value[:PAYMENTS_SHOWN])
        trail = _trail(uow, customer, lines, 0)
    return {
        "customer": customer,
        "accounts": accounts,
        "account_numbers": account_numbers,
        "lines": lines,
        "payments": recent,
        "trail": Panel(trail.value[:TRAIL_SIZE], None) if trail.value is not None else trail,
        "trail_more": trail.value is not None and len(trail.value) > TRAIL_SIZE,
        "trail_page": 1,
        "labels": LABELS,
        "revealed": revealed or {},
        "can_reveal": page.actor.can(customers.READ_SENSITIVE),
        "later_panels": _LATER_PANELS,
    }


_LATER_PANELS = (
    ("bills", _("Bills")),
    ("orders", _("Orders")),
    ("tickets", _("Tickets")),
    ("interactions", _("Interactions")),
)


@router.get("/{customer_id}", name="customer_360")
def customer_360(customer_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    return page.render("customers/customer.html", _customer_context(page, customer_id))


@router.get("/{customer_id}/audit", name="customer_audit")
def customer_audit(
    customer_id: str,
    page: ConsolePage = Depends(console_page),
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """More of the audit trail (htmx swaps the panel; without it, a page of its own)."""
    with page.uow(readonly=True) as uow:
        customer = customers.get_customer(uow, customer_id)
        lines = _panel(lambda: _lines(uow, customer.id, page.locale))
        trail = _trail(uow, customer, lines, (p - 1) * TRAIL_SIZE)
    context = {
        "customer": customer,
        "trail": Panel(trail.value[:TRAIL_SIZE], None) if trail.value is not None else trail,
        "trail_more": trail.value is not None and len(trail.value) > TRAIL_SIZE,
        "trail_page": p,
        "labels": LABELS,
    }
    if page.htmx:
        return page.render("customers/_trail.html", context)
    return page.render("customers/audit.html", context)


@router.post("/{customer_id}/reveal-id", name="customer_reveal_id")
def reveal_id(
    customer_id: str,
    page: ConsolePage = Depends(console_page),
    document_id: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """The full ID number: ``customers.read_sensitive``, audited by the service."""
    with page.uow() as uow:
        number = customers.reveal_id_number(uow, customer_id, document_id or None)
        uow.commit()
    if page.htmx:
        return page.render("customers/_revealed.html", {"number": number})
    revealed = {document_id: number} if document_id else {}
    context = _customer_context(page, customer_id, revealed=revealed)
    return page.render("customers/customer.html", context)
