"""Console pages of held money 挂账: the held payments staff may see, filtered by reason,
business date and terminal, and the two ways to settle one — credit it to a service
number's billing account, or mark it for a cash refund at a hall's counter.

Templates: ``src/teleserve/web/templates/payments/``. Reads and writes go through
``payments.service`` as the logged-in actor (``payments.read`` to list, ``payments.settle``
to act; scoping is the service's: another organisation's payment is a 404 page). The
number to credit is resolved to its live line's billing account with
``inventory.payable_lines`` (the kiosk's own lookup), and ``settle_held`` then refuses an
account outside the actor's subtree. Service numbers are masked on screen and in exports;
leaving the number empty credits the number the payment named, so the page never has to
show it in full. A refused form comes back with the service's message; nothing changed.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query
from starlette.responses import RedirectResponse, Response

from teleserve.core.errors import DomainError, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.masking import mask_phone
from teleserve.core.uow import UnitOfWork
from teleserve.inventory import service as inventory
from teleserve.payments import service as payments
from teleserve.payments.models import HeldReason
from teleserve.payments.schemas import PaymentView
from teleserve.web.console.admin import FormError
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, Cell, audit_export, export_response, require_format

router = APIRouter(prefix="/payments")

READ = "payments.read"
SETTLE = "payments.settle"
PAGE_SIZE = 20
EXPORT_MAX = 10_000
_FETCH = 200

REASONS = {
    HeldReason.unknown_account: _("Unknown billing account"),
    HeldReason.account_closed: _("Billing account closed"),
    HeldReason.unresolved_target: _("Only a service number"),
    HeldReason.number_not_payable: _("Number not payable"),
    HeldReason.amount_mismatch: _("Notes do not match the amount"),
    HeldReason.unknown_denomination: _("Unknown note"),
    HeldReason.over_limit: _("Over the limit"),
    HeldReason.reversed_original: _("Reversed before it arrived"),
    HeldReason.reversed: _("Reversed at the kiosk"),
}
CHANNELS = {
    "kiosk_cash": _("Kiosk cash"),
    "kiosk_card": _("Kiosk card"),
    "counter_cash": _("Counter cash"),
    "web": _("Web"),
    "api": _("API"),
}
_DONE = {
    "credited": _("Payment {receipt_no} has been credited to the number's account."),
    "refund": _("Payment {receipt_no} is marked for a refund at the cash desk of the hall."),
}


def _day(text: str, label: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            _("{field} is not a date (year-month-day)"), code="invalid_date", field=label
        ) from None


def _criteria(
    page: ConsolePage, reason: str, first: str, last: str, terminal: str
) -> dict[str, Any]:
    """The list's filters as ``list_held_payments`` takes them."""
    return {
        "reason": reason or None,
        "terminal_id": terminal.strip() or None,
        "first": _day(first, page.t(_("From"))),
        "last": _day(last, page.t(_("To"))),
    }


def _masked(view: PaymentView) -> str:
    return mask_phone(view.service_number) if view.service_number else ""


def _held_context(
    page: ConsolePage,
    filters: dict[str, str],
    p: int,
    *,
    error: FormError | None = None,
    done: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    found: list[PaymentView] = []
    total = 0
    with page.uow(readonly=True) as uow:
        try:
            criteria = _criteria(page, **filters)
            found, total = payments.list_held_payments(
                uow, **criteria, limit=PAGE_SIZE, offset=(p - 1) * PAGE_SIZE
            )
        except ValidationError as exc:
            error = error or (exc.message, exc.params)
    return {
        "held": found,
        "total": total,
        "p": p,
        "has_next": p * PAGE_SIZE < total,
        "filters": filters,
        "reasons": REASONS,
        "channels": CHANNELS,
        "masked": _masked,
        "formats": FORMATS,
        "can_settle": page.actor.can(SETTLE),
        "error": error,
        "done": done,
    }


def _filters(reason: str, first: str, last: str, terminal: str) -> dict[str, str]:
    return {"reason": reason, "first": first, "last": last, "terminal": terminal}


@router.get("/held", name="held_money")
def held_money(
    page: ConsolePage = Depends(console_page),
    reason: Annotated[str, Query(max_length=40)] = "",
    first: Annotated[str, Query(max_length=10)] = "",
    last: Annotated[str, Query(max_length=10)] = "",
    terminal: Annotated[str, Query(max_length=64)] = "",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
    done: Annotated[str, Query(max_length=20)] = "",
    receipt: Annotated[str, Query(max_length=24)] = "",
) -> Response:
    page.actor.require(READ)
    message = (_DONE[done], {"receipt_no": receipt}) if done in _DONE and receipt else None
    context = _held_context(page, _filters(reason, first, last, terminal), p, done=message)
    return page.render("payments/held.html", context)


def _refused(page: ConsolePage, exc: DomainError) -> Response:
    if isinstance(exc, NotFound) and exc.code == "payment_not_found":
        raise exc
    context = _held_context(page, _filters("", "", "", ""), 1, error=(exc.message, exc.params))
    return page.render("payments/held.html", context, status_code=exc.status)


def _done(page: ConsolePage, what: str, view: PaymentView) -> Response:
    url = page.request.url_for("held_money").path
    return RedirectResponse(f"{url}?done={what}&receipt={view.receipt_no}", status_code=303)


def _billing_account_of(uow: UnitOfWork, number: str) -> str:
    line = inventory.payable_lines(uow.connection, [number]).get(number)
    if line is None:
        raise NotFound(
            _("No line in service has the number {number}"),
            code="number_not_found",
            number=mask_phone(number),
        )
    return line.billing_account_id


@router.post("/held/{payment_id}/credit", name="held_money_credit")
def credit(
    payment_id: str,
    page: ConsolePage = Depends(console_page),
    number: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Credit held money to the billing account of a service number (the one typed, or
    else the one the payment named)."""
    try:
        with page.uow() as uow:
            uow.actor.require(SETTLE)
            wanted = number.strip() or (payments.get_payment(uow, payment_id).service_number or "")
            if not wanted:
                raise ValidationError(
                    _("Type the service number to credit"), code="number_required"
                )
            view = payments.settle_held(uow, payment_id, _billing_account_of(uow, wanted))
            uow.commit()
    except DomainError as exc:
        return _refused(page, exc)
    return _done(page, "credited", view)


@router.post("/held/{payment_id}/refund", name="held_money_refund")
def refund(
    payment_id: str,
    page: ConsolePage = Depends(console_page),
    note: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    try:
        with page.uow() as uow:
            view = payments.refund_held(uow, payment_id, note)
            uow.commit()
    except DomainError as exc:
        return _refused(page, exc)
    return _done(page, "refund", view)


@router.get("/held/export/{fmt}", name="held_money_export")
def held_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    reason: Annotated[str, Query(max_length=40)] = "",
    first: Annotated[str, Query(max_length=10)] = "",
    last: Annotated[str, Query(max_length=10)] = "",
    terminal: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    local = page.local_cell
    filters = _filters(reason, first, last, terminal)
    found: list[PaymentView] = []
    with page.uow() as uow:
        criteria = _criteria(page, **filters)
        while len(found) < EXPORT_MAX:
            batch, total = payments.list_held_payments(
                uow, **criteria, limit=_FETCH, offset=len(found)
            )
            found.extend(batch)
            if not batch or len(found) >= total:
                break
        found = found[:EXPORT_MAX]
        audit_export(uow, "held_payments", fmt, len(found), filters)
        uow.commit()
    rows: list[list[Cell]] = [
        [
            v.receipt_no,
            local(v.created_at),
            v.business_date,
            v.amount / 100,
            page.t(CHANNELS.get(v.channel, v.channel)),
            page.t(REASONS[HeldReason(v.held_reason)]) if v.held_reason else "",
            _masked(v),
            v.terminal_id or "",
            v.terminal_serial or "",
            v.source_id or "",
        ]
        for v in found
    ]
    headers = [
        page.t(_("Receipt")),
        page.t(_("Received")),
        page.t(_("Business date")),
        page.t(_("Amount (yuan)")),
        page.t(_("Channel")),
        page.t(_("Reason")),
        page.t(_("Service number")),
        page.t(_("Terminal")),
        page.t(_("Serial")),
        page.t(_("Cash box or desk")),
    ]
    return export_response(fmt, "held-payments", headers, rows, sheet=page.t(_("Held money")))
