"""Console pages of the catalog domain: offerings (list, detail, create, edit, activate,
retire), points rewards (read-only) and their exports.

Templates: ``src/teleserve/web/templates/catalog/``. Reads go through
``catalog.service.page_offerings`` / ``get_offering_in_scope``, which need
``catalog.read`` and show a regional actor only offerings sold within its subtree: any
other offering is ``NotFound`` there and a 404 page here. Writes need ``catalog.write``
(operator-wide, checked by the service); the form pages ask for it up front so nobody
fills in a form they cannot submit.

Prices are typed and shown in yuan; the service keeps fees in fen and usage rates in fen
per unit. A refused form comes back with the service's message and what was typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from teleserve.catalog import service as catalog
from teleserve.catalog.schemas import (
    AccountType,
    CustomerCategory,
    OfferingKind,
    OfferingOut,
    OfferingStatus,
    RewardOut,
    price_components,
)
from teleserve.core.errors import Conflict, DomainError, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.query import Condition, ListQuery, Op
from teleserve.core.uow import UnitOfWork
from teleserve.web.console.admin import (
    form_error,
    local_input,
    name_of,
    org_names,
    parse_count,
    parse_local_datetime,
    parse_rate_yuan,
    parse_yuan,
    rate_yuan_text,
    yuan_text,
)
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, audit_export, export_response, require_format

router = APIRouter(prefix="/catalog")

PAGE_SIZE = 20
EXPORT_MAX = 10_000
_FETCH = 500
READ = "catalog.read"
WRITE = "catalog.write"

KINDS = {
    OfferingKind.plan: _("Mobile plan"),
    OfferingKind.vas: _("Value-added service"),
    OfferingKind.broadband: _("Broadband"),
    OfferingKind.fixed_line: _("Fixed line"),
}
STATUSES: dict[str, str] = {
    OfferingStatus.draft: _("Draft"),
    OfferingStatus.active: _("Active"),
    OfferingStatus.retired: _("Retired"),
}
CATEGORIES = {
    CustomerCategory.individual: _("Individual"),
    CustomerCategory.organisation: _("Organisation"),
}
ACCOUNT_TYPES = {AccountType.prepaid: _("Prepaid"), AccountType.postpaid: _("Postpaid")}
GRANTS = {"offering": _("Offering"), "bill_credit": _("Bill credit")}
UNITS = {"min": _("per minute"), "MB": _("per MB"), "SMS": _("per message")}
PRICE_TYPES = {
    "recurring": _("Monthly fee"),
    "oneTime": _("One-time fee"),
    "usage": _("Usage beyond the allowance"),
}

# The form's fields by the service's field names (their labels, also used to name a
# field in a refusal such as "{field} cannot be negative").
FIELD_LABELS = {
    "code": _("Code"),
    "kind": _("Kind"),
    "name_zh": _("Chinese name"),
    "name_en": _("English name"),
    "description_zh": _("Chinese description"),
    "description_en": _("English description"),
    "category": _("Category"),
    "valid_from": _("On sale from"),
    "valid_to": _("On sale until"),
    "monthly_fee": _("Monthly fee (yuan)"),
    "one_time_fee": _("One-time fee (yuan)"),
    "voice_rate": _("Voice rate (yuan per minute)"),
    "data_rate": _("Data rate (yuan per MB)"),
    "sms_rate": _("SMS rate (yuan per message)"),
    "voice_minutes": _("Voice minutes a month"),
    "data_mb": _("Data a month (MB)"),
    "sms_count": _("Messages a month"),
    "customer_categories": _("Customer categories"),
    "account_types": _("Account types"),
    "regions": _("Regions"),
    "requires_plans": _("Requires one of the plans"),
    "excludes": _("Cannot be combined with"),
}
_FEES = ("monthly_fee", "one_time_fee")
_RATES = ("voice_rate", "data_rate", "sms_rate")
_COUNTS = ("voice_minutes", "data_mb", "sms_count")
_TEXTS = ("name_zh", "name_en", "description_zh", "description_en", "category")
_CODE_LIST = re.compile(r"[\s,，;；]+")
_TEXT_MAX = 2000


def _labels() -> dict[str, Any]:
    return {
        "kinds": KINDS,
        "statuses": STATUSES,
        "categories": CATEGORIES,
        "account_types": ACCOUNT_TYPES,
        "grants": GRANTS,
    }


# -- list ------------------------------------------------------------------------------


def _conditions(kind: str, status: str, q: str) -> tuple[Condition, ...]:
    """The list's filters as service conditions; an unknown kind or status is refused."""
    conditions = []
    if kind:
        if kind not in KINDS:
            raise ValidationError(_("Unknown kind {value}"), value=kind[:20])
        conditions.append(Condition("kind", Op.eq, (kind,)))
    if status:
        if status not in STATUSES:
            raise ValidationError(_("Unknown status {value}"), value=status[:20])
        conditions.append(Condition("status", Op.eq, (status,)))
    if q.strip():
        conditions.append(Condition("search", Op.eq, (q.strip(),)))
    return tuple(conditions)


@router.get("", name="catalog_list")
def offering_list(
    page: ConsolePage = Depends(console_page),
    kind: Annotated[str, Query(max_length=20)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    p: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    page.actor.require(READ)
    offerings: list[OfferingOut] = []
    total = 0
    error: tuple[str, dict[str, Any]] | None = None
    try:
        query = ListQuery(_conditions(kind, status, q), (p - 1) * PAGE_SIZE, PAGE_SIZE)
        with page.uow(readonly=True) as uow:
            offerings, total = catalog.page_offerings(uow, query)
    except ValidationError as exc:
        error = (exc.message, exc.params)
    context = {
        **_labels(),
        "offerings": offerings,
        "total": total,
        "kind": kind,
        "status": status,
        "q": q,
        "p": p,
        "has_next": p * PAGE_SIZE < total,
        "error": error,
        "formats": FORMATS,
        "can_write": page.actor.can(WRITE),
        "filters": {"kind": kind, "status": status, "q": q},
    }
    return page.render("catalog/list.html", context)


@router.get("/export/{fmt}", name="catalog_export")
def offering_export(
    fmt: str,
    page: ConsolePage = Depends(console_page),
    kind: Annotated[str, Query(max_length=20)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """Every offering matching the list's filters (up to ``EXPORT_MAX``), fees in yuan."""
    require_format(fmt)
    page.actor.require(READ)
    conditions = _conditions(kind, status, q)
    rows: list[list[Any]] = []
    with page.uow() as uow:
        while len(rows) < EXPORT_MAX:
            batch, total = catalog.page_offerings(uow, ListQuery(conditions, len(rows), _FETCH))
            rows.extend(_export_row(page, o) for o in batch)
            if not batch or len(rows) >= total:
                break
        rows = rows[:EXPORT_MAX]
        audit_export(uow, "offerings", fmt, len(rows), {"kind": kind, "status": status, "q": q})
        uow.commit()
    headers = [
        page.t(_("Code")),
        page.t(_("Offering name")),
        page.t(_("Kind")),
        page.t(_("Category")),
        page.t(_("Status")),
        page.t(_("Monthly fee (yuan)")),
        page.t(_("One-time fee (yuan)")),
        page.t(_("Voice minutes a month")),
        page.t(_("Data a month (MB)")),
        page.t(_("Messages a month")),
        page.t(_("Regions")),
        page.t(_("Updated")),
    ]
    return export_response(fmt, "offerings", headers, rows, sheet=page.t(_("Offerings")))


def _export_row(page: ConsolePage, o: OfferingOut) -> list[Any]:
    return [
        o.code,
        o.name_en if page.locale == "en" else o.name_zh,
        page.t(KINDS[o.kind]),
        o.category,
        page.t(STATUSES[o.status]),
        float(Decimal(o.monthly_fee).scaleb(-2)),
        float(Decimal(o.one_time_fee).scaleb(-2)),
        o.voice_minutes,
        o.data_mb,
        o.sms_count,
        " ".join(o.regions),
        o.updated_at.astimezone(page.zone).replace(tzinfo=None),
    ]


# -- rewards (read-only) ---------------------------------------------------------------


@router.get("/rewards", name="catalog_rewards")
def reward_list(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(READ)
    with page.uow(readonly=True) as uow:
        rewards = catalog.list_rewards(uow)
    return page.render(
        "catalog/rewards.html", {**_labels(), "rewards": rewards, "formats": FORMATS}
    )


@router.get("/rewards/export/{fmt}", name="catalog_rewards_export")
def reward_export(fmt: str, page: ConsolePage = Depends(console_page)) -> Response:
    require_format(fmt)
    page.actor.require(READ)
    with page.uow() as uow:
        rewards = catalog.list_rewards(uow)
        audit_export(uow, "rewards", fmt, len(rewards), {})
        uow.commit()
    rows = [_reward_row(page, r) for r in rewards]
    headers = [
        page.t(_("Code")),
        page.t(_("Reward name")),
        page.t(_("Points")),
        page.t(_("Grants")),
        page.t(_("Offering")),
        page.t(_("Credit (yuan)")),
        page.t(_("Status")),
    ]
    return export_response(fmt, "rewards", headers, rows, sheet=page.t(_("Rewards")))


def _reward_row(page: ConsolePage, r: RewardOut) -> list[Any]:
    credit = float(Decimal(r.credit_amount).scaleb(-2)) if r.credit_amount is not None else None
    return [
        r.code,
        r.name_en if page.locale == "en" else r.name_zh,
        r.points_cost,
        page.t(GRANTS[str(r.grant)]),
        r.offering_code or "",
        credit,
        page.t(STATUSES[r.status]),
    ]


# -- the form: create and edit ---------------------------------------------------------


@dataclass
class OfferingForm:
    """What the form shows: text as typed (amounts in yuan), lists as selected."""

    values: dict[str, str]
    customer_categories: list[str]
    account_types: list[str]
    regions: list[str]

    @classmethod
    def blank(cls) -> OfferingForm:
        values = dict.fromkeys(FIELD_LABELS, "")
        values["kind"] = OfferingKind.plan.value
        return cls(values, [], [], [])

    @classmethod
    def of(cls, o: OfferingOut, zone: ZoneInfo) -> OfferingForm:
        values = {f: str(getattr(o, f)) for f in ("code", "kind", *_TEXTS, *_COUNTS)}
        values.update({f: yuan_text(getattr(o, f)) for f in _FEES})
        values.update({f: rate_yuan_text(getattr(o, f)) for f in _RATES})
        values["valid_from"] = local_input(o.valid_from, zone)
        values["valid_to"] = local_input(o.valid_to, zone)
        values["requires_plans"] = ", ".join(o.requires_plans)
        values["excludes"] = ", ".join(o.excludes)
        return cls(
            values,
            [str(c) for c in o.customer_categories],
            [str(a) for a in o.account_types],
            list(o.regions),
        )

    @classmethod
    def posted(cls, form: FormData) -> OfferingForm:
        def text(name: str) -> str:
            value = form.get(name, "")
            return value[:_TEXT_MAX] if isinstance(value, str) else ""

        def many(name: str) -> list[str]:
            return [v[:255] for v in form.getlist(name) if isinstance(v, str)][:200]

        return cls(
            {f: text(f) for f in FIELD_LABELS},
            many("customer_categories"),
            many("account_types"),
            many("regions"),
        )

    def to_service(self, page: ConsolePage, *, creating: bool) -> dict[str, Any]:
        """The service's fields; a value that does not parse is a ValidationError."""
        v = self.values
        label = {f: page.t(message) for f, message in FIELD_LABELS.items()}
        out: dict[str, Any] = {f: v[f] for f in _TEXTS}
        if creating:
            if v["kind"] not in KINDS:
                raise ValidationError(_("Unknown kind {value}"), value=v["kind"][:20])
            out["code"] = v["code"]
            out["kind"] = v["kind"]
        for f in _FEES:
            out[f] = parse_yuan(v[f], label[f])
        for f in _RATES:
            out[f] = parse_rate_yuan(v[f], label[f], catalog.RATE_MAX_DECIMALS)
        for f in _COUNTS:
            out[f] = parse_count(v[f], label[f])
        zone = page.zone
        out["valid_from"] = parse_local_datetime(v["valid_from"], label["valid_from"], zone)
        out["valid_to"] = parse_local_datetime(v["valid_to"], label["valid_to"], zone)
        for value in self.customer_categories:
            if value not in CATEGORIES:
                raise ValidationError(_("Unknown customer category {value}"), value=value[:20])
        for value in self.account_types:
            if value not in ACCOUNT_TYPES:
                raise ValidationError(_("Unknown account type {value}"), value=value[:20])
        out["customer_categories"] = tuple(self.customer_categories)
        out["account_types"] = tuple(self.account_types)
        out["regions"] = tuple(self.regions)
        out["requires_plans"] = tuple(c for c in _CODE_LIST.split(v["requires_plans"]) if c)
        out["excludes"] = tuple(c for c in _CODE_LIST.split(v["excludes"]) if c)
        return out


def _form_context(
    page: ConsolePage,
    uow: UnitOfWork,
    form: OfferingForm,
    *,
    offering: OfferingOut | None,
    error: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    names = org_names(uow, page.locale)
    # Every unit below the root (the root means "everywhere": no region at all), plus
    # any region the offering already has that the actor cannot name.
    regions = [(path, name) for path, name in names.items() if path.count("/") > 2]
    regions += [(path, path) for path in form.regions if path not in names]
    return {
        **_labels(),
        "form": form,
        "offering": offering,
        "field_labels": FIELD_LABELS,
        "region_choices": regions,
        "error": error,
        "commercial_frozen": offering is not None and offering.status is OfferingStatus.active,
    }


@router.get("/new", name="catalog_new")
def new_offering(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(WRITE)
    with page.uow(readonly=True) as uow:
        context = _form_context(page, uow, OfferingForm.blank(), offering=None)
    return page.render("catalog/form.html", context)


@router.post("/new", name="catalog_create")
async def create_offering(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(WRITE)
    form = OfferingForm.posted(await page.request.form())
    try:
        with page.uow() as uow:
            created = catalog.create_offering(uow, form.to_service(page, creating=True))
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        with page.uow(readonly=True) as uow:
            context = _form_context(
                page, uow, form, offering=None, error=form_error(exc, FIELD_LABELS)
            )
        return page.render("catalog/form.html", context, status_code=exc.status)
    return _to_offering(page, created.id, "created")


@router.get("/{offering_id}/edit", name="catalog_edit")
def edit_offering(offering_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(WRITE)
    with page.uow(readonly=True) as uow:
        offering = catalog.get_offering_in_scope(uow, offering_id)
        if offering.status is OfferingStatus.retired:
            raise Conflict(_("A retired offering cannot change"))
        form = OfferingForm.of(offering, page.zone)
        context = _form_context(page, uow, form, offering=offering)
    return page.render("catalog/form.html", context)


@router.post("/{offering_id}/edit", name="catalog_update")
async def update_offering(offering_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(WRITE)
    form = OfferingForm.posted(await page.request.form())
    with page.uow(readonly=True) as uow:
        offering = catalog.get_offering_in_scope(uow, offering_id)  # 404 before anything
    try:
        with page.uow() as uow:
            # All fields are posted; the service changes those that differ (an active
            # offering's prices and allowances are read-only in the form, and refused by
            # the service if changed anyway).
            catalog.update_offering(uow, offering.id, form.to_service(page, creating=False))
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        # Code and kind never change: show the offering's own.
        form.values["code"], form.values["kind"] = offering.code, offering.kind.value
        with page.uow(readonly=True) as uow:
            context = _form_context(
                page, uow, form, offering=offering, error=form_error(exc, FIELD_LABELS)
            )
        return page.render("catalog/form.html", context, status_code=exc.status)
    return _to_offering(page, offering.id, "updated")


def _to_offering(page: ConsolePage, offering_id: str, done: str) -> Response:
    url = page.request.url_for("catalog_offering", offering_id=offering_id).path
    return RedirectResponse(f"{url}?done={done}", status_code=303)


# -- detail and status changes ---------------------------------------------------------

_DONE = {
    "created": _("The offering has been created as a draft."),
    "updated": _("Your changes have been saved."),
    "activated": _("The offering is now active."),
    "retired": _("The offering has been retired."),
}


def _detail_context(
    page: ConsolePage, offering_id: str, *, error: tuple[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    with page.uow(readonly=True) as uow:
        offering = catalog.get_offering_in_scope(uow, offering_id)
        related = catalog.offerings_by_code(uow, (*offering.requires_plans, *offering.excludes))
        rewards = [r for r in catalog.list_rewards(uow) if r.offering_code == offering.code]
        names = org_names(uow, page.locale)
    return {
        **_labels(),
        "offering": offering,
        "prices": price_components(offering),
        "price_types": PRICE_TYPES,
        "units": UNITS,
        "rate_yuan": rate_yuan_text,
        "related": related,
        "rewards": rewards,
        "region_name": name_of(names),
        "can_write": page.actor.can(WRITE),
        "error": error,
        "done": None,
    }


@router.get("/{offering_id}", name="catalog_offering")
def offering_detail(
    offering_id: str,
    page: ConsolePage = Depends(console_page),
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    context = _detail_context(page, offering_id)
    context["done"] = _DONE.get(done)
    return page.render("catalog/offering.html", context)


@router.post("/{offering_id}/activate", name="catalog_activate")
def activate(offering_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    return _change_status(page, offering_id, "activated", "")


@router.post("/{offering_id}/retire", name="catalog_retire")
async def retire(offering_id: str, page: ConsolePage = Depends(console_page)) -> Response:
    reason = (await page.request.form()).get("reason", "")
    return _change_status(page, offering_id, "retired", reason if isinstance(reason, str) else "")


def _change_status(page: ConsolePage, offering_id: str, action: str, reason: str) -> Response:
    try:
        with page.uow() as uow:
            offering = catalog.get_offering_in_scope(uow, offering_id)
            if action == "activated":
                catalog.activate_offering(uow, offering.id)
            else:
                if not reason.strip():
                    raise ValidationError(_("Please give the reason for retiring the offering"))
                if len(reason) > 500:
                    raise ValidationError(_("The reason has at most {max} characters"), max=500)
                catalog.retire_offering(uow, offering.id, reason)
            uow.commit()
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        context = _detail_context(page, offering_id, error=(exc.message, exc.params))
        return page.render("catalog/offering.html", context, status_code=exc.status)
    return _to_offering(page, offering.id, action)
