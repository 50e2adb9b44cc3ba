"""Use cases of the catalog domain: product offerings, eligibility and points rewards.

Who may do what:
- Reading the catalog needs no permission: it is the operator's public price list,
  shown to customers at kiosks and on the web. Draft offerings (not yet published) are
  the exception: they are visible only with ``catalog.read`` or ``catalog.write`` and
  answer "Unknown offering" to everyone else.
- Changing the catalog needs ``catalog.write`` and is audited. An operator-wide writer
  (``*`` or an actor at the root of the organisation tree) may change any offering; a
  regional writer only offerings sold exclusively inside its own subtree.

Lifecycle of an offering: ``draft`` -> ``active`` -> ``retired`` (a draft may also be
retired directly), checked in ``OFFERING_TRANSITIONS``. Everything of a draft may change;
an active offering keeps its commercial terms (prices and allowances) because customers
signed up under them — publish a new offering and retire the old one instead; a retired
offering changes no more. It is "on sale" when active and inside its validity window.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import pydantic
from sqlalchemy import ColumnElement, Text, and_, cast, func, insert, not_, or_, select

from teleserve.catalog.models import Offering, Reward
from teleserve.catalog.schemas import (
    BASE_KINDS,
    AccountType,
    CustomerCategory,
    OfferingChanges,
    OfferingKind,
    OfferingOut,
    OfferingSpec,
    OfferingStatus,
    RewardChanges,
    RewardGrant,
    RewardOut,
    RewardSpec,
    RewardStatus,
)
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import as_utc, business_date, utcnow
from teleserve.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
    parse_input,
)
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.query import (
    FilterField,
    ListQuery,
    Op,
    fetch_page,
    parse_datetime,
    where_clauses,
)
from teleserve.core.uow import UnitOfWork

__all__ = [
    "OFFERING_TRANSITIONS",
    "EligibilityChecker",
    "activate_offering",
    "check_eligibility",
    "create_offering",
    "create_offerings_batch",
    "create_reward",
    "get_offering",
    "get_offering_in_scope",
    "get_reward",
    "list_offerings",
    "list_rewards",
    "offering_categories",
    "offerings_by_code",
    "page_offerings",
    "retire_offering",
    "retire_reward",
    "update_offering",
    "update_reward",
]

CODE_RE = re.compile(r"[A-Z0-9][A-Z0-9_\-]{1,39}")
ORG_PATH_RE = re.compile(r"/(?:[^/]+/)+")
RATE_MAX_DECIMALS = 6
NAME_MAX = 200
CATEGORY_MAX = 40
_IN_CHUNK = 500  # bound IN (...) lists well under every driver's parameter limit

OFFERING_TRANSITIONS: Mapping[OfferingStatus, frozenset[OfferingStatus]] = {
    OfferingStatus.draft: frozenset({OfferingStatus.active, OfferingStatus.retired}),
    OfferingStatus.active: frozenset({OfferingStatus.retired}),
    OfferingStatus.retired: frozenset(),
}

# What customers signed up for: frozen once an offering is active.
COMMERCIAL_TERMS = frozenset(
    {
        "monthly_fee",
        "one_time_fee",
        "voice_rate",
        "data_rate",
        "sms_rate",
        "voice_minutes",
        "data_mb",
        "sms_count",
    }
)
_TEXT_FIELDS = ("name_zh", "name_en", "description_zh", "description_en", "category")
_LIST_FIELDS = ("customer_categories", "account_types", "regions", "requires_plans", "excludes")
_OFFERING_FIELDS = tuple(OfferingSpec.model_fields)

_ONLY_FOR_CATEGORY = {
    CustomerCategory.individual: _("Offering {offering} is only available to individual customers"),
    CustomerCategory.organisation: _(
        "Offering {offering} is only available to organisation customers"
    ),
}
_ONLY_FOR_ACCOUNT = {
    AccountType.prepaid: _("Offering {offering} is only available to prepaid accounts"),
    AccountType.postpaid: _("Offering {offering} is only available to postpaid accounts"),
}

M = TypeVar("M", bound=pydantic.BaseModel)


# -- small helpers ---------------------------------------------------------------------


def _norm_code(code: str) -> str:
    return code.strip().upper()


_parse = parse_input


def _jsonable(value: Any) -> Any:
    """Audit details are canonical JSON: decimals and dates become text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _operator_wide(actor: Actor) -> bool:
    # The root of the organisation tree is "/<root>/": an actor there sees everything.
    return "*" in actor.permissions or actor.org_path.count("/") <= 2


def _can_see_drafts(actor: Actor) -> bool:
    return actor.can("catalog.read") or actor.can("catalog.write")


def _require_region_authority(actor: Actor, regions: Sequence[str]) -> None:
    if _operator_wide(actor):
        return
    if not regions or not all(r.startswith(actor.org_path) for r in regions):
        raise PermissionDenied(_("You may only manage offerings sold within your own organisation"))


def _require_org_path(org_path: str) -> None:
    if not isinstance(org_path, str) or not ORG_PATH_RE.fullmatch(org_path):
        raise ValidationError(
            _("Invalid organisation path {org_path}: expected a path like /ROOT/GD/"),
            org_path=org_path,
        )


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- offering validation ---------------------------------------------------------------


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Trimmed text, upper-case codes, de-duplicated lists of plain strings."""
    out = dict(values)
    if "code" in out:
        out["code"] = _norm_code(out["code"])
    for field in _TEXT_FIELDS:
        if isinstance(out.get(field), str):
            out[field] = out[field].strip()
    for field in _LIST_FIELDS:
        if out.get(field) is not None:
            items = [str(v).strip() for v in out[field]]
            if field in ("requires_plans", "excludes"):
                items = [_norm_code(v) for v in items]
            out[field] = _dedupe(items)
    return out


def _validate_offering(v: Mapping[str, Any]) -> None:
    """Every rule about one offering's own fields (references are checked separately)."""
    if not CODE_RE.fullmatch(v["code"]):
        raise ValidationError(
            _("Invalid offering code {offering}: use 2 to 40 letters, digits, '_' or '-'"),
            offering=v["code"],
        )
    if not v["name_zh"] or not v["name_en"]:
        raise ValidationError(_("An offering needs a Chinese and an English name"))
    for field, limit in (("name_zh", NAME_MAX), ("name_en", NAME_MAX), ("category", CATEGORY_MAX)):
        if len(v[field]) > limit:
            raise ValidationError(
                _("{field} is too long (at most {limit} characters)"), field=field, limit=limit
            )
    _validate_validity(v["valid_from"], v["valid_to"])
    for field in ("monthly_fee", "one_time_fee", "voice_minutes", "data_mb", "sms_count"):
        if v[field] < 0:
            raise ValidationError(_("{field} cannot be negative"), field=field)
    for field in ("voice_rate", "data_rate", "sms_rate"):
        _validate_rate(field, v[field])
    for region in v["regions"]:
        _require_org_path(region)
    if v["kind"] != OfferingKind.vas and (v["requires_plans"] or v["excludes"]):
        raise ValidationError(
            _("Only a value-added service can require a base plan or exclude other services")
        )
    if v["code"] in v["excludes"]:
        raise ValidationError(_("An offering cannot exclude itself"))


def _validate_validity(valid_from: datetime | None, valid_to: datetime | None) -> None:
    for field, value in (("valid_from", valid_from), ("valid_to", valid_to)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(_("{field} must include a time zone"), field=field)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ValidationError(_("The end of validity must be after its start"))


def _validate_rate(field: str, rate: Decimal) -> None:
    exponent = rate.as_tuple().exponent
    if (
        not rate.is_finite()
        or rate < 0
        or (isinstance(exponent, int) and exponent < -RATE_MAX_DECIMALS)
    ):
        raise ValidationError(
            _("{field} must be a non-negative rate in fen with at most {decimals} decimals"),
            field=field,
            decimals=RATE_MAX_DECIMALS,
        )


def _kinds_of(uow: UnitOfWork, codes: Collection[str]) -> dict[str, str]:
    table = Offering.__table__
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(codes)):
        rows = uow.connection.execute(
            select(table.c.code, table.c.kind).where(table.c.code.in_(chunk))
        )
        found.update({str(r.code): str(r.kind) for r in rows})
    return found


def _check_references(uow: UnitOfWork, v: Mapping[str, Any], pending: Mapping[str, str]) -> None:
    """Required plans must be base offerings, excluded codes VAS offerings — existing ones
    or ones created in the same batch (``pending``: code -> kind)."""
    wanted = (set(v["requires_plans"]) | set(v["excludes"])) - set(pending)
    kinds = {**_kinds_of(uow, wanted), **pending}
    for code in v["requires_plans"]:
        if code not in kinds:
            raise ValidationError(_("Unknown offering {offering}"), offering=code)
        if kinds[code] not in BASE_KINDS:
            raise ValidationError(_("Offering {offering} is not a base plan"), offering=code)
    for code in v["excludes"]:
        if code not in kinds:
            raise ValidationError(_("Unknown offering {offering}"), offering=code)
        if kinds[code] != OfferingKind.vas:
            raise ValidationError(
                _("Offering {offering} is not a value-added service"), offering=code
            )


def _row_values(row: Offering) -> dict[str, Any]:
    return {field: getattr(row, field) for field in _OFFERING_FIELDS}


def _changed_event(uow: UnitOfWork, offering: OfferingOut, change: str) -> None:
    uow.emit(
        "catalog.offering_changed",
        {
            "offering_id": offering.id,
            "code": offering.code,
            "kind": str(offering.kind),
            "status": str(offering.status),
            "change": change,
        },
        key=offering.id,
    )


# -- offerings: writes -----------------------------------------------------------------


def create_offering(uow: UnitOfWork, spec: OfferingSpec | Mapping[str, Any]) -> OfferingOut:
    """Create one offering (the same write path as the batch)."""
    return create_offerings_batch(uow, [spec])[0]


def create_offerings_batch(
    uow: UnitOfWork, specs: Sequence[OfferingSpec | Mapping[str, Any]]
) -> list[OfferingOut]:
    """Create many offerings in one Core statement (the seed, catalog imports).

    All of them are validated before anything is written; offerings in the batch may refer
    to each other (a VAS requiring a plan of the same batch).
    """
    uow.actor.require("catalog.write")
    parsed = [_parse(OfferingSpec, spec) for spec in specs]
    rows: list[dict[str, Any]] = []
    pending: dict[str, str] = {}
    for spec in parsed:
        values = _normalise(spec.model_dump())
        _validate_offering(values)
        _require_region_authority(uow.actor, values["regions"])
        if values["code"] in pending:
            raise Conflict(_("Offering code {offering} appears twice"), offering=values["code"])
        pending[values["code"]] = str(values["kind"])
        rows.append(values)
    taken = _kinds_of(uow, pending)
    if taken:
        raise Conflict(_("Offering code {offering} already exists"), offering=min(taken))
    for values in rows:
        _check_references(uow, values, pending)

    now = utcnow()
    for values in rows:
        values.update(id=new_id(), created_at=now, updated_at=now)
        values["kind"] = str(values["kind"])
        values["status"] = str(values["status"])
    if rows:
        uow.connection.execute(insert(Offering), rows)
    created = [OfferingOut.model_validate(values) for values in rows]
    for offering in created:
        uow.audit(
            "catalog.offering.created",
            "offering",
            offering.id,
            {"code": offering.code, "kind": str(offering.kind), "status": str(offering.status)},
        )
        _changed_event(uow, offering, "created")
    return created


def update_offering(
    uow: UnitOfWork, id_or_code: str, changes: OfferingChanges | Mapping[str, Any]
) -> OfferingOut:
    """Change the fields given in ``changes`` (see the module doc for what may change)."""
    uow.actor.require("catalog.write")
    parsed = _parse(OfferingChanges, changes)
    row = _load_offering(uow, id_or_code, for_update=True)
    _require_region_authority(uow.actor, row.regions)
    if row.status == OfferingStatus.retired:
        raise Conflict(_("A retired offering cannot change"))

    given = _normalise(parsed.model_dump(exclude_unset=True))
    for field, value in given.items():
        if value is None and field not in ("valid_from", "valid_to"):
            raise ValidationError(_("{field} cannot be empty"), field=field)
    current = _row_values(row)
    updates = {f: v for f, v in given.items() if v != current[f]}
    if row.status == OfferingStatus.active and COMMERCIAL_TERMS & set(updates):
        raise Conflict(
            _(
                "The prices and allowances of an active offering cannot change; "
                "create a new offering and retire this one"
            )
        )
    merged = {**current, **updates}
    _validate_offering(merged)
    _require_region_authority(uow.actor, merged["regions"])
    _check_references(uow, merged, {})
    if not updates:
        return OfferingOut.model_validate(row)

    for field, value in updates.items():
        stored = [str(v) for v in value] if field in _LIST_FIELDS else value
        setattr(row, field, stored)
    row.updated_at = utcnow()
    uow.flush()
    offering = OfferingOut.model_validate(row)
    uow.audit(
        "catalog.offering.updated",
        "offering",
        row.id,
        {"code": row.code, "changes": {f: _jsonable(v) for f, v in sorted(updates.items())}},
    )
    _changed_event(uow, offering, "updated")
    return offering


def activate_offering(uow: UnitOfWork, id_or_code: str) -> OfferingOut:
    """Publish a draft: it goes on sale (within its validity window)."""
    return _change_status(uow, id_or_code, OfferingStatus.active)


def retire_offering(uow: UnitOfWork, id_or_code: str, reason: str = "") -> OfferingOut:
    """Take an offering off sale for good. Lines that have it keep it (and are billed)."""
    return _change_status(uow, id_or_code, OfferingStatus.retired, reason)


def _change_status(
    uow: UnitOfWork, id_or_code: str, target: OfferingStatus, reason: str = ""
) -> OfferingOut:
    uow.actor.require("catalog.write")
    row = _load_offering(uow, id_or_code, for_update=True)
    _require_region_authority(uow.actor, row.regions)
    current = OfferingStatus(row.status)
    if target not in OFFERING_TRANSITIONS[current]:
        if target is OfferingStatus.active:
            raise Conflict(_("Only a draft offering can be activated"))
        raise Conflict(_("Offering {offering} is already retired"), offering=row.code)
    row.status = str(target)
    row.updated_at = utcnow()
    uow.flush()
    offering = OfferingOut.model_validate(row)
    action = "activated" if target is OfferingStatus.active else "retired"
    uow.audit(
        f"catalog.offering.{action}",
        "offering",
        row.id,
        {"code": row.code, "from": str(current), "reason": reason.strip()},
    )
    _changed_event(uow, offering, action)
    return offering


# -- offerings: reads ------------------------------------------------------------------


def _load_offering(uow: UnitOfWork, id_or_code: str, *, for_update: bool = False) -> Offering:
    key = id_or_code.strip() if isinstance(id_or_code, str) else ""
    query = select(Offering).where(or_(Offering.id == key, Offering.code == key.upper()))
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = uow.session.scalars(query).first() if key else None
    if row is None or (row.status == OfferingStatus.draft and not _can_see_drafts(uow.actor)):
        raise NotFound(_("Unknown offering {offering}"), offering=id_or_code)
    return row


def get_offering(uow: UnitOfWork, id_or_code: str) -> OfferingOut:
    """One offering by id or code (codes are case-insensitive)."""
    return OfferingOut.model_validate(_load_offering(uow, id_or_code))


def list_offerings(
    uow: UnitOfWork,
    kind: str | None = None,
    status: str | None = None,
    org_path: str | None = None,
    *,
    category: str | None = None,
) -> list[OfferingOut]:
    """Offerings by kind and status, sorted by kind then code; with ``org_path``, only
    those sold in that organisation unit (drafts only for catalog staff)."""
    query = select(Offering).order_by(Offering.kind, Offering.code)
    if kind is not None:
        query = query.where(Offering.kind == _enum(OfferingKind, kind, _("Unknown kind {value}")))
    if status is not None:
        wanted = _enum(OfferingStatus, status, _("Unknown status {value}"))
        query = query.where(Offering.status == wanted)
    if not _can_see_drafts(uow.actor):
        query = query.where(Offering.status != OfferingStatus.draft)
    if category is not None:
        query = query.where(Offering.category == category.strip())
    if org_path is not None:
        _require_org_path(org_path)
    offerings = [OfferingOut.model_validate(row) for row in uow.session.scalars(query)]
    if org_path is not None:
        offerings = [o for o in offerings if o.available_in(org_path)]
    return offerings


E = TypeVar("E", OfferingKind, OfferingStatus, CustomerCategory, AccountType, RewardStatus)


def _enum(enum: type[E], value: object, message: str) -> E:
    try:
        return enum(str(value))
    except ValueError:
        raise ValidationError(message, value=value) from None


# -- eligibility -----------------------------------------------------------------------


class EligibilityChecker:
    """Checks offerings against a customer's situation, loading each offering once.

    ``check_eligibility`` uses one for a single check; batch callers (the subscription
    seed) keep one for the whole batch so thousands of checks cost a handful of queries.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._cache: dict[str, OfferingOut | None] = {}
        self._now = utcnow()
        self._drafts_visible = _can_see_drafts(uow.actor)

    def _get(self, code: str) -> OfferingOut | None:
        if code not in self._cache:
            row = self._uow.session.scalars(select(Offering).where(Offering.code == code)).first()
            visible = row is not None and (
                row.status != OfferingStatus.draft or self._drafts_visible
            )
            self._cache[code] = OfferingOut.model_validate(row) if visible else None
        return self._cache[code]

    def check(
        self,
        offering_code: str,
        *,
        customer_category: str,
        account_type: str,
        org_path: str,
        current_plan_code: str | None = None,
        current_vas_codes: Iterable[str] = (),
        kinds: Collection[str] | None = None,
    ) -> OfferingOut:
        """The offering if the customer may take it now; else ValidationError with why."""
        category = _enum(
            CustomerCategory, customer_category, _("Unknown customer category {value}")
        )
        account = _enum(AccountType, account_type, _("Unknown account type {value}"))
        _require_org_path(org_path)
        offering = self._get(_norm_code(offering_code)) if isinstance(offering_code, str) else None
        if offering is None:
            raise ValidationError(_("Unknown offering {offering}"), offering=offering_code)
        code = offering.code
        if kinds is not None and offering.kind not in kinds:
            if set(kinds) == {OfferingKind.vas}:
                raise ValidationError(
                    _("Offering {offering} is not a value-added service"), offering=code
                )
            raise ValidationError(
                _("Offering {offering} is not a base plan for this kind of line"), offering=code
            )
        self._check_on_sale(offering)
        if offering.customer_categories and category not in offering.customer_categories:
            raise ValidationError(
                _ONLY_FOR_CATEGORY[offering.customer_categories[0]], offering=code
            )
        if offering.account_types and account not in offering.account_types:
            raise ValidationError(_ONLY_FOR_ACCOUNT[offering.account_types[0]], offering=code)
        if not offering.available_in(org_path):
            raise ValidationError(
                _("Offering {offering} is not available in this region"), offering=code
            )
        current_vas = [_norm_code(c) for c in current_vas_codes]
        if offering.kind is OfferingKind.vas:
            self._check_vas(offering, current_plan_code, current_vas)
        else:
            self._check_plan_keeps_vas(offering, current_vas)
        return offering

    def _check_on_sale(self, offering: OfferingOut) -> None:
        code = offering.code
        if offering.status is OfferingStatus.draft:
            raise ValidationError(_("Offering {offering} is not published yet"), offering=code)
        if offering.status is OfferingStatus.retired:
            raise ValidationError(_("Offering {offering} has been retired"), offering=code)
        if offering.valid_from is not None and self._now < offering.valid_from:
            raise ValidationError(
                _("Offering {offering} is not on sale until {date}"),
                offering=code,
                date=business_date(offering.valid_from).isoformat(),
            )
        if offering.valid_to is not None and self._now >= offering.valid_to:
            raise ValidationError(_("Offering {offering} is no longer on sale"), offering=code)

    def _check_vas(
        self, vas: OfferingOut, current_plan_code: str | None, current_vas: Sequence[str]
    ) -> None:
        if not current_plan_code:
            raise ValidationError(
                _("Value-added service {offering} needs a base plan"), offering=vas.code
            )
        if vas.requires_plans and _norm_code(current_plan_code) not in vas.requires_plans:
            raise ValidationError(
                _("Value-added service {offering} is only available with the plans {plans}"),
                offering=vas.code,
                plans=", ".join(vas.requires_plans),
            )
        for other_code in current_vas:
            if other_code == vas.code:
                continue  # already having it is the subscription's business, not eligibility
            other = self._get(other_code)
            # Exclusion is symmetric: either side may declare it.
            if other_code in vas.excludes or (other is not None and vas.code in other.excludes):
                raise ValidationError(
                    _("Value-added service {offering} cannot be combined with {other}"),
                    offering=vas.code,
                    other=other_code,
                )

    def _check_plan_keeps_vas(self, plan: OfferingOut, current_vas: Sequence[str]) -> None:
        for vas_code in current_vas:
            vas = self._get(vas_code)
            if vas is not None and vas.requires_plans and plan.code not in vas.requires_plans:
                raise ValidationError(
                    _("Current service {vas} does not work with plan {offering}; remove it first"),
                    vas=vas_code,
                    offering=plan.code,
                )


def check_eligibility(
    uow: UnitOfWork,
    offering_code: str,
    *,
    customer_category: str,
    account_type: str,
    org_path: str,
    current_plan_code: str | None = None,
    current_vas_codes: Iterable[str] = (),
    kinds: Collection[str] | None = None,
) -> None:
    """Raise ValidationError with a clear reason unless the customer may take the offering.

    Checks, in order: the offering exists (``kinds``, if given, limits which kinds are
    acceptable here), is on sale now, suits the customer category, the account type and
    the region (``org_path`` of the customer); a VAS needs a base plan (one of
    ``requires_plans`` if set) and must not be mutually exclusive with a current VAS; a
    base plan must keep every current VAS available (a VAS restricted to other plans has
    to be removed first).
    """
    EligibilityChecker(uow).check(
        offering_code,
        customer_category=customer_category,
        account_type=account_type,
        org_path=org_path,
        current_plan_code=current_plan_code,
        current_vas_codes=current_vas_codes,
        kinds=kinds,
    )


# -- rewards ---------------------------------------------------------------------------


def _validate_reward(uow: UnitOfWork, v: Mapping[str, Any]) -> None:
    if not CODE_RE.fullmatch(v["code"]):
        raise ValidationError(
            _("Invalid reward code {reward}: use 2 to 40 letters, digits, '_' or '-'"),
            reward=v["code"],
        )
    if not v["name_zh"] or not v["name_en"]:
        raise ValidationError(_("A reward needs a Chinese and an English name"))
    for field in ("name_zh", "name_en"):
        if len(v[field]) > NAME_MAX:
            raise ValidationError(
                _("{field} is too long (at most {limit} characters)"), field=field, limit=NAME_MAX
            )
    if v["points_cost"] <= 0:
        raise ValidationError(_("The points cost must be a positive whole number"))
    if v["grant"] == RewardGrant.offering:
        _validate_granted_offering(uow, v)
    else:
        if v["offering_code"] is not None:
            raise ValidationError(_("A reward grants either an offering or a bill credit"))
        if v["credit_amount"] is None or v["credit_amount"] <= 0:
            raise ValidationError(_("A bill-credit reward needs a positive amount in fen"))


def _validate_granted_offering(uow: UnitOfWork, v: Mapping[str, Any]) -> None:
    if v["credit_amount"] is not None:
        raise ValidationError(_("A reward grants either an offering or a bill credit"))
    code = v["offering_code"]
    if not code:
        raise ValidationError(_("A reward that grants an offering needs the offering's code"))
    row = uow.session.scalars(select(Offering).where(Offering.code == code)).first()
    if row is None:
        raise ValidationError(_("Unknown offering {offering}"), offering=code)
    if row.kind != OfferingKind.vas:
        raise ValidationError(_("Offering {offering} is not a value-added service"), offering=code)
    if row.status == OfferingStatus.retired:
        raise ValidationError(_("Offering {offering} has been retired"), offering=code)


def _normalise_reward(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for field in ("code", "offering_code"):
        if isinstance(out.get(field), str):
            out[field] = _norm_code(out[field]) or None
    for field in ("name_zh", "name_en", "description_zh", "description_en"):
        if isinstance(out.get(field), str):
            out[field] = out[field].strip()
    return out


def create_reward(uow: UnitOfWork, spec: RewardSpec | Mapping[str, Any]) -> RewardOut:
    uow.actor.require("catalog.write")
    values = _normalise_reward(_parse(RewardSpec, spec).model_dump())
    _validate_reward(uow, values)
    if uow.session.scalars(select(Reward.id).where(Reward.code == values["code"])).first():
        raise Conflict(_("Reward code {reward} already exists"), reward=values["code"])
    now = utcnow()
    row = Reward(
        id=new_id(),
        status=RewardStatus.active,
        created_at=now,
        updated_at=now,
        **{**values, "grant": str(values["grant"])},
    )
    uow.session.add(row)
    uow.flush()
    uow.audit(
        "catalog.reward.created",
        "reward",
        row.id,
        {"code": row.code, "points_cost": row.points_cost, "grant": row.grant},
    )
    return RewardOut.model_validate(row)


def update_reward(
    uow: UnitOfWork, id_or_code: str, changes: RewardChanges | Mapping[str, Any]
) -> RewardOut:
    uow.actor.require("catalog.write")
    parsed = _parse(RewardChanges, changes)
    row = _load_reward(uow, id_or_code, for_update=True)
    if row.status == RewardStatus.retired:
        raise Conflict(_("A retired reward cannot change"))
    given = _normalise_reward(parsed.model_dump(exclude_unset=True))
    for field, value in given.items():
        if value is None and field not in ("offering_code", "credit_amount"):
            raise ValidationError(_("{field} cannot be empty"), field=field)
    current = {f: getattr(row, f) for f in RewardSpec.model_fields}
    updates = {f: v for f, v in given.items() if v != current[f]}
    _validate_reward(uow, {**current, **updates})
    if updates:
        for field, value in updates.items():
            setattr(row, field, str(value) if field == "grant" else value)
        row.updated_at = utcnow()
        uow.flush()
        uow.audit(
            "catalog.reward.updated",
            "reward",
            row.id,
            {"code": row.code, "changes": {f: _jsonable(v) for f, v in sorted(updates.items())}},
        )
    return RewardOut.model_validate(row)


def retire_reward(uow: UnitOfWork, id_or_code: str) -> RewardOut:
    """Withdraw a reward (kept, not deleted: past redemptions refer to it)."""
    uow.actor.require("catalog.write")
    row = _load_reward(uow, id_or_code, for_update=True)
    if row.status == RewardStatus.retired:
        raise Conflict(_("Reward {reward} is already retired"), reward=row.code)
    row.status = RewardStatus.retired
    row.updated_at = utcnow()
    uow.flush()
    uow.audit("catalog.reward.retired", "reward", row.id, {"code": row.code})
    return RewardOut.model_validate(row)


def _load_reward(uow: UnitOfWork, id_or_code: str, *, for_update: bool = False) -> Reward:
    key = id_or_code.strip() if isinstance(id_or_code, str) else ""
    query = select(Reward).where(or_(Reward.id == key, Reward.code == key.upper()))
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = uow.session.scalars(query).first() if key else None
    if row is None:
        raise NotFound(_("Unknown reward {reward}"), reward=id_or_code)
    return row


def get_reward(uow: UnitOfWork, id_or_code: str) -> RewardOut:
    return RewardOut.model_validate(_load_reward(uow, id_or_code))


def list_rewards(uow: UnitOfWork, *, status: str | None = None) -> list[RewardOut]:
    """Rewards sorted by points cost then code (what a redemption screen shows)."""
    query = select(Reward).order_by(Reward.points_cost, Reward.code)
    if status is not None:
        query = query.where(
            Reward.status == _enum(RewardStatus, status, _("Unknown status {value}"))
        )
    return [RewardOut.model_validate(row) for row in uow.session.scalars(query)]


# -- offerings: paged reads for integrations (TMF620) ------------------------------------


class _CategoryMatch:
    """The ``category`` filter: ``plan`` (an offering kind) matches every offering of the
    kind, ``plan.mobile`` (kind and free-text category) only those filed under it.

    ``where_clauses`` compares a filter field's column with ``==`` / ``!=``; this object
    answers those comparisons with the SQL for either form, so one filter takes both."""

    def __eq__(self, value: object) -> Any:
        kind, dot, sub = str(value).partition(".")
        if not dot:
            return Offering.kind == kind
        return and_(Offering.kind == kind, Offering.category == sub)

    def __ne__(self, value: object) -> Any:
        return not_(self == value)

    __hash__ = None  # type: ignore[assignment]


class _TextMatch:
    """The console's ``search`` filter: text inside the code or either name, ignoring
    case (staff type a code, or a name in either language; see ``_CategoryMatch``)."""

    def __eq__(self, value: object) -> Any:
        needle = str(value).strip().lower()
        columns = (Offering.code, Offering.name_zh, Offering.name_en)
        return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))

    def __ne__(self, value: object) -> Any:
        return not_(self == value)

    __hash__ = None  # type: ignore[assignment]


def _offering_filters(locale: str) -> dict[str, FilterField]:
    # Names are shown in the request's language, so they are matched in it too.
    name = Offering.name_en if locale == "en" else Offering.name_zh
    return {
        "search": FilterField(_TextMatch(), ops=frozenset({Op.eq})),
        "id": FilterField(Offering.id),
        "code": FilterField(Offering.code, lambda v: _norm_code(v)),
        "kind": FilterField(Offering.kind),
        "status": FilterField(Offering.status),
        "category": FilterField(_CategoryMatch()),
        "name": FilterField(name),
        "updated_at": FilterField(Offering.updated_at, parse_datetime, ordered=True),
        "valid_from": FilterField(Offering.valid_from, parse_datetime, ordered=True),
        "valid_to": FilterField(Offering.valid_to, parse_datetime, ordered=True),
    }


def _ancestors(org_path: str) -> list[str]:
    """``/TS/GD/GZ/`` -> ``/TS/``, ``/TS/GD/``, ``/TS/GD/GZ/``."""
    parts = [p for p in org_path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def _regional(actor: Actor) -> bool:
    return not _operator_wide(actor) and actor.kind is not ActorKind.system


def _region_clause(actor: Actor) -> ColumnElement[bool]:
    """Offerings sold somewhere in the actor's subtree: no regions (sold everywhere), a
    region that contains the actor's unit, or one inside the actor's subtree (a province
    sees what one of its cities sells). ``regions`` is a JSON array of org paths; its
    stored text (compact JSON, the same on SQLite and PostgreSQL) is matched so the
    filter runs in the database, before paging."""
    text = cast(Offering.regions, Text)
    clauses = [text == "[]"]
    clauses += [text.contains(f'"{path}"', autoescape=True) for path in _ancestors(actor.org_path)]
    clauses.append(text.contains(f'"{actor.org_path}', autoescape=True))
    return or_(*clauses)


def _sold_near(actor: Actor, regions: Sequence[str]) -> bool:
    """Python twin of ``_region_clause`` for one offering."""
    if not _regional(actor) or not regions:
        return True
    return any(actor.org_path.startswith(r) or r.startswith(actor.org_path) for r in regions)


def _require_catalog_reader(actor: Actor) -> None:
    # The catalog is public at kiosks and on the web (``list_offerings``); these reads
    # serve integrations, which see drafts too, so they need the catalog permission.
    if not _can_see_drafts(actor):
        actor.require("catalog.read")


def _scoped_offerings(uow: UnitOfWork) -> Any:
    query = select(Offering)
    if _regional(uow.actor):
        query = query.where(_region_clause(uow.actor))
    return query


def page_offerings(uow: UnitOfWork, list_query: ListQuery) -> tuple[list[OfferingOut], int]:
    """One page of the offerings matching ``list_query`` and the total, sorted by kind
    then code. Needs ``catalog.read``; a regional actor sees only offerings sold within
    its subtree (see ``_region_clause``). Filter fields: id, code, kind, status, category
    (``kind`` or ``kind.category``), name (in the unit of work's language), updated_at,
    valid_from, valid_to, and search (text in the code or either name, equality only)."""
    _require_catalog_reader(uow.actor)
    filters = _offering_filters(uow.locale)
    query = _scoped_offerings(uow).where(*where_clauses(list_query.conditions, filters))
    rows, total = fetch_page(
        uow.session, query, list_query, order_by=[Offering.kind, Offering.code]
    )
    return [OfferingOut.model_validate(row) for row in rows], total


def get_offering_in_scope(uow: UnitOfWork, id_or_code: str) -> OfferingOut:
    """One offering for an integration: needs ``catalog.read``; an offering not sold in
    a regional actor's subtree answers "Unknown offering" like a missing one."""
    _require_catalog_reader(uow.actor)
    offering = OfferingOut.model_validate(_load_offering(uow, id_or_code))
    if not _sold_near(uow.actor, offering.regions):
        raise NotFound(_("Unknown offering {offering}"), offering=id_or_code)
    return offering


def offering_categories(uow: UnitOfWork) -> list[tuple[str, str, datetime]]:
    """(kind, category, last update) of every (kind, free-text category) pair in use
    among the offerings the actor may see, sorted. Needs ``catalog.read``."""
    _require_catalog_reader(uow.actor)
    scoped = _scoped_offerings(uow).subquery()
    query = (
        select(scoped.c.kind, scoped.c.category, func.max(scoped.c.updated_at))
        .group_by(scoped.c.kind, scoped.c.category)
        .order_by(scoped.c.kind, scoped.c.category)
    )
    return [(str(k), str(c), as_utc(u)) for k, c, u in uow.session.execute(query)]


def offerings_by_code(uow: UnitOfWork, codes: Collection[str]) -> dict[str, OfferingOut]:
    """The offerings with these codes that the actor may read (drafts only for catalog
    staff, like ``get_offering``), by code; unknown codes are simply absent. One query
    per 500 codes: lists of lines and of offerings name their plans and VAS in bulk."""
    found: dict[str, OfferingOut] = {}
    wanted = sorted({_norm_code(c) for c in codes if isinstance(c, str)})
    drafts = _can_see_drafts(uow.actor)
    for chunk in _chunks(wanted):
        for row in uow.session.scalars(select(Offering).where(Offering.code.in_(chunk))):
            if row.status != OfferingStatus.draft or drafts:
                found[row.code] = OfferingOut.model_validate(row)
    return found
