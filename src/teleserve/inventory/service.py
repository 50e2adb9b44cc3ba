"""Use cases of the inventory domain: subscriptions (用户 / lines), their VAS and bars.

A line has a stored lifecycle ``pending`` -> ``active`` -> ``terminated`` and, while
active, a SET of bars (credit 欠费, lost 挂失, keep_number 停机保号, admin, fraud). A
"suspended" line (停机) is an active line with at least one bar; lifting its last bar
resumes it (复机). Every change of a line is checked in ONE place, ``_authorise_change``,
against three tables:

- ``TRANSITIONS``: which changes each status accepts and the status after them
  (a terminated line accepts nothing; bars and payments need an active line);
- ``CHANGE_WHO``: who may make each non-bar change;
- ``BAR_RULES``: per bar, who may place it, who may lift it, whether a payment lifts it
  (only ``credit``), whether it blocks service changes (``admin``, ``fraud``) and which
  bars must not be open when it is placed (no keep-number while in arrears).

Who is who: staff, API clients and terminals act with permissions (``inventory.write``
for ordinary changes; ``inventory.bars.lost`` / ``.admin`` / ``.fraud`` to lift those
bars); a customer actor (whose ``id`` is its customer id) acts on its own lines only,
without permissions, where the rules let a customer act at all; the system actor runs
credit control and fraud detection. Reads need ``inventory.read`` (a customer reads its
own lines). Lines outside the actor's organisation subtree answer NotFound like missing
ones. Plans and VAS are checked through ``teleserve.catalog.service`` only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, literal_column, select

from teleserve.catalog.service import EligibilityChecker
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import utcnow
from teleserve.core.db import PerDialect, in_list, in_parameter, insert_many, table_of
from teleserve.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
    parse_input,
)
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.query import FilterField, ListQuery, fetch_page, parse_datetime, where_clauses
from teleserve.core.reads import fetch
from teleserve.core.uow import UnitOfWork
from teleserve.inventory.models import Subscription, SubscriptionBar, SubscriptionVas
from teleserve.inventory.schemas import (
    Bar,
    BarOut,
    LineKind,
    NewSubscription,
    SubscriptionOut,
    SubscriptionStatus,
    VasOut,
)

__all__ = [
    "BAR_RULES",
    "CHANGE_WHO",
    "TRANSITIONS",
    "Change",
    "PayableLine",
    "activate",
    "add_bar",
    "add_vas",
    "change_plan",
    "create_subscription",
    "create_subscriptions_batch",
    "find_by_service_number",
    "get_subscription",
    "lift_bar",
    "list_for_billing_account",
    "list_for_customer",
    "normalise_service_number",
    "on_account_payment",
    "on_payment_received",
    "page_subscriptions",
    "payable_lines",
    "remove_vas",
    "terminate",
]

EVENT_TOPIC = "inventory.subscription_changed"
READ = "inventory.read"
WRITE = "inventory.write"
REASON_MAX = 500
_IN_CHUNK = 500

# The catalog kind of the base offering each kind of line is built on.
PLAN_KIND_FOR_LINE: Mapping[LineKind, str] = {
    LineKind.mobile: "plan",
    LineKind.fixed_line: "fixed_line",
    LineKind.broadband: "broadband",
}
VAS_KINDS = frozenset({"vas"})
# ``PLAN_KIND_FOR_LINE`` as the eligibility check's ``kinds``, built once, not per line.
_PLAN_KINDS: Mapping[LineKind, frozenset[str]] = {
    kind: frozenset({plan_kind}) for kind, plan_kind in PLAN_KIND_FOR_LINE.items()
}
# What a typed phone number may carry that its stored form does not.
_SEPARATORS_RE = re.compile(r"[\s-]")

_MOBILE_RE = re.compile(r"1[3-9]\d{9}")
_FIXED_RE = re.compile(r"0[1-9]\d{8,10}")  # area code (010, 0755...) and 7-8 digits
_BROADBAND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{3,39}")
_ORG_PATH_RE = re.compile(r"/(?:[^/]+/)+")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


class Change(StrEnum):
    activate = "activate"
    terminate = "terminate"
    change_plan = "change_plan"
    add_vas = "add_vas"
    remove_vas = "remove_vas"
    add_bar = "add_bar"
    lift_bar = "lift_bar"
    payment = "payment"  # lifts the bars a payment clears (credit)


_S = SubscriptionStatus
# status -> {change it accepts: status after it}. Anything absent is refused.
TRANSITIONS: Mapping[SubscriptionStatus, Mapping[Change, SubscriptionStatus]] = {
    _S.pending: {
        Change.activate: _S.active,
        Change.terminate: _S.terminated,
        Change.change_plan: _S.pending,
        Change.add_vas: _S.pending,
        Change.remove_vas: _S.pending,
    },
    _S.active: {
        Change.terminate: _S.terminated,
        Change.change_plan: _S.active,
        Change.add_vas: _S.active,
        Change.remove_vas: _S.active,
        Change.add_bar: _S.active,
        Change.lift_bar: _S.active,
        Change.payment: _S.active,
    },
    _S.terminated: {},
}
_REFUSED_IN = {
    _S.pending: _("The line is not active yet"),
    _S.active: _("The line is already active"),
    _S.terminated: _("A terminated line accepts no changes"),
}
# Changes to what the customer buys; operator bars (admin, fraud) freeze them.
SERVICE_CHANGES = frozenset({Change.change_plan, Change.add_vas, Change.remove_vas})

_OPERATOR = frozenset({ActorKind.staff, ActorKind.api_client, ActorKind.system})
_STAFF = frozenset({ActorKind.staff})


@dataclass(frozen=True)
class Who:
    """Actors of ``kinds`` holding any of ``permissions`` — or, for customer actors, the
    line's own customer (any customer with ``any_customer``). ``denied`` is the message
    for any other kind of actor."""

    kinds: frozenset[ActorKind]
    permissions: tuple[str, ...] = ()
    denied: str = _("This change cannot be made through this channel")
    any_customer: bool = False

    def check(self, actor: Actor, owner_id: str) -> None:
        if actor.kind not in self.kinds:
            raise PermissionDenied(self.denied)
        if actor.kind is ActorKind.customer:
            if not self.any_customer and actor.id != owner_id:
                raise NotFound(_("No such line"))
            return
        if not any(actor.can(p) for p in self.permissions):
            raise PermissionDenied(
                _("This change needs the permission {permission}"),
                permission=" / ".join(self.permissions),
            )


@dataclass(frozen=True)
class BarRule:
    place: Who
    lift: Who
    lifted_by_payment: bool = False
    blocks_service_changes: bool = False
    not_while: frozenset[Bar] = frozenset()
    not_while_message: str = ""


_KEEP_NUMBER_WHO = Who(
    _STAFF | {ActorKind.customer},
    (WRITE,),
    _("Keep-number suspension is done only at the customer's request"),
)
_STAFF_ONLY_LIFT = _("Only authorised staff can lift this bar")

BAR_RULES: Mapping[Bar, BarRule] = {
    # Credit control (the system) or staff bar for arrears; any payment lifts it.
    Bar.credit: BarRule(
        place=Who(_OPERATOR, (WRITE,)),
        lift=Who(_OPERATOR, (WRITE,)),
        lifted_by_payment=True,
    ),
    # The customer (or staff for them) reports the SIM lost; reopening (解挂) needs staff
    # who check the customer's identity document.
    Bar.lost: BarRule(
        place=Who(frozenset({ActorKind.staff, ActorKind.api_client, ActorKind.customer}), (WRITE,)),
        lift=Who(
            _STAFF,
            ("inventory.bars.lost",),
            _("A lost line can only be reopened by authorised staff with the customer's ID"),
        ),
    ),
    # Only at the customer's request, and not to dodge arrears.
    Bar.keep_number: BarRule(
        place=_KEEP_NUMBER_WHO,
        lift=_KEEP_NUMBER_WHO,
        not_while=frozenset({Bar.credit}),
        not_while_message=_("Pay the arrears before suspending the line to keep its number"),
    ),
    Bar.admin: BarRule(
        place=Who(_STAFF, ("inventory.bars.admin",)),
        lift=Who(_STAFF, ("inventory.bars.admin",), _STAFF_ONLY_LIFT),
        blocks_service_changes=True,
    ),
    # Fraud detection (the system) or staff place it; only authorised staff lift it.
    Bar.fraud: BarRule(
        place=Who(_STAFF | {ActorKind.system}, ("inventory.bars.fraud",)),
        lift=Who(_STAFF, ("inventory.bars.fraud",), _STAFF_ONLY_LIFT),
        blocks_service_changes=True,
    ),
}

_SERVICE_CHANGE_WHO = Who(_OPERATOR | {ActorKind.customer}, (WRITE,))
CHANGE_WHO: Mapping[Change, Who] = {
    Change.activate: Who(_OPERATOR, (WRITE,)),
    Change.terminate: Who(_OPERATOR, (WRITE,)),
    Change.change_plan: _SERVICE_CHANGE_WHO,
    Change.add_vas: _SERVICE_CHANGE_WHO,
    Change.remove_vas: _SERVICE_CHANGE_WHO,
    # Payments arrive from the payments domain under the paying channel's actor: a kiosk,
    # a cashier, an API client, the web (possibly a customer paying for someone else's
    # number, 代缴). The payment itself was authorised and recorded by payments.service.
    Change.payment: Who(
        _OPERATOR | {ActorKind.terminal, ActorKind.customer},
        ("payments.record", WRITE),
        any_customer=True,
    ),
}

_ALREADY_BARRED = {
    Bar.credit: _("The line is already barred for arrears"),
    Bar.lost: _("The line is already reported lost"),
    Bar.keep_number: _("The line is already suspended to keep its number"),
    Bar.admin: _("The line is already barred by the operator"),
    Bar.fraud: _("The line is already barred for suspected fraud"),
}
_NOT_BARRED = {
    Bar.credit: _("The line is not barred for arrears"),
    Bar.lost: _("The line is not reported lost"),
    Bar.keep_number: _("The line is not suspended to keep its number"),
    Bar.admin: _("The line is not barred by the operator"),
    Bar.fraud: _("The line is not barred for suspected fraud"),
}


# -- the one place where changes are checked -------------------------------------------


def _open_bars(sub: Subscription) -> frozenset[Bar]:
    return frozenset(Bar(b.bar) for b in sub.bars if b.lifted_at is None)


def _authorise_change(
    actor: Actor, sub: Subscription, change: Change, bar: Bar | None = None
) -> SubscriptionStatus:
    """Check ``change`` (with ``bar`` for bar changes) against the tables above; return the
    line's status after it, or raise PermissionDenied / Conflict."""
    if change is Change.add_bar or change is Change.lift_bar:
        assert bar is not None
        rule = BAR_RULES[bar]
        (rule.place if change is Change.add_bar else rule.lift).check(actor, sub.customer_id)
    else:
        CHANGE_WHO[change].check(actor, sub.customer_id)

    status = SubscriptionStatus(sub.status)
    after = TRANSITIONS[status].get(change)
    if after is None:
        raise Conflict(_REFUSED_IN[status])
    open_bars = _open_bars(sub)
    if change in SERVICE_CHANGES and any(BAR_RULES[b].blocks_service_changes for b in open_bars):
        raise Conflict(
            _("The line is barred by the operator; lift the bar before changing its services")
        )
    if change is Change.add_bar:
        assert bar is not None
        if bar in open_bars:
            raise Conflict(_ALREADY_BARRED[bar])
        if BAR_RULES[bar].not_while & open_bars:
            raise Conflict(BAR_RULES[bar].not_while_message)
    if change is Change.lift_bar:
        assert bar is not None
        if bar not in open_bars:
            raise Conflict(_NOT_BARRED[bar])
    return after


# -- validation helpers ----------------------------------------------------------------


def _parse_new(spec: NewSubscription | Mapping[str, Any]) -> NewSubscription:
    return parse_input(NewSubscription, spec)


def _parse_bar(bar: str) -> Bar:
    try:
        return Bar(bar)
    except ValueError:
        raise ValidationError(_("Unknown bar type {bar}"), bar=bar) from None


def _reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationError(_("A reason is required"))
    if len(text) > REASON_MAX:
        raise ValidationError(
            _("The reason is too long (at most {limit} characters)"), limit=REASON_MAX
        )
    return text


def _norm_code(code: str) -> str:
    if not isinstance(code, str) or not code.strip():
        raise ValidationError(_("An offering code is required"))
    return code.strip().upper()


def normalise_service_number(kind: LineKind, raw: str) -> str:
    """The stored form of a service number: digits only for mobile (no +86) and fixed
    lines (no dash), the account name as given (trimmed) for broadband."""
    if not isinstance(raw, str):
        raw = ""
    if kind is LineKind.broadband:
        value = raw.strip()
        if not _BROADBAND_RE.fullmatch(value):
            raise ValidationError(_("Not a valid broadband account name"))
        return value
    # A number of ASCII digits has no separators (the common case, a bulk order's every line).
    value = raw if raw.isascii() and raw.isdigit() else _SEPARATORS_RE.sub("", raw)
    if kind is LineKind.mobile:
        if value.startswith("+86"):
            value = value[3:]
        elif len(value) == 13 and value.startswith("86"):
            value = value[2:]
        if not _MOBILE_RE.fullmatch(value):
            raise ValidationError(_("Not a valid mobile number"))
        return value
    if not _FIXED_RE.fullmatch(value):
        raise ValidationError(_("Not a valid fixed-line number (area code and number)"))
    return value


def _lookup_forms(raw: str) -> list[str]:
    """Every stored form ``raw`` could have (the kind is not known at lookup)."""
    if (
        isinstance(raw, str)
        and raw.isascii()
        and raw.isdigit()
        and not (len(raw) == 13 and raw.startswith("86"))
    ):
        # Plain digits are their own stored form for every kind (only a 13-digit 86...
        # number has another, without the country code): the kiosk money path looks up
        # every payment's number, always digits.
        return [raw]
    forms = {raw.strip()} if isinstance(raw, str) else set()
    for kind in LineKind:
        try:
            forms.add(normalise_service_number(kind, raw))
        except ValidationError:
            continue
    return sorted(f for f in forms if f)


def _actor_ref(actor: Actor) -> str:
    return f"{actor.kind}:{actor.id}"


def _visible(actor: Actor, sub: Subscription) -> bool:
    if actor.kind is ActorKind.customer:
        return actor.id == sub.customer_id
    return actor.sees(sub.org_path)


def _require_read(actor: Actor) -> None:
    if actor.kind is not ActorKind.customer:
        actor.require(READ)


# -- loading and output ----------------------------------------------------------------


def _load(uow: UnitOfWork, sub_id: str, *, for_update: bool = False) -> Subscription:
    query = select(Subscription).where(Subscription.id == sub_id)
    return _one(uow, query, for_update)


def _one(uow: UnitOfWork, query: Any, for_update: bool, *, scoped: bool = True) -> Subscription:
    if for_update:
        # Serialises concurrent changes of one line on PostgreSQL (SQLite writers already
        # queue on BEGIN IMMEDIATE).
        query = query.with_for_update().execution_options(populate_existing=True)
    sub: Subscription | None = uow.session.scalars(query).first()
    if sub is None or (scoped and not _visible(uow.actor, sub)):
        raise NotFound(_("No such line"))
    return sub


def _load_for_payment(uow: UnitOfWork, key: str) -> Subscription:
    """By id or live service number, in ANY organisation: a customer may pay at any kiosk
    or counter of the operator (通缴), wherever the line is registered."""
    key = key.strip() if isinstance(key, str) else ""
    is_id = uow.session.scalar(select(Subscription.id).where(Subscription.id == key))
    query = select(Subscription).where(Subscription.id == key) if is_id else _live_by_number(key)
    return _one(uow, query, True, scoped=False)


def _live_by_number(raw: str) -> Any:
    return select(Subscription).where(
        Subscription.service_number.in_(_lookup_forms(raw)),
        Subscription.status != SubscriptionStatus.terminated,
    )


def _to_out(sub: Subscription) -> SubscriptionOut:
    bars = sorted((b for b in sub.bars if b.lifted_at is None), key=lambda b: (b.placed_at, b.bar))
    vas = sorted((v for v in sub.vas if v.end_at is None), key=lambda v: (v.start_at, v.code))
    return SubscriptionOut(
        id=sub.id,
        service_number=sub.service_number,
        kind=LineKind(sub.kind),
        customer_id=sub.customer_id,
        billing_account_id=sub.billing_account_id,
        org_path=sub.org_path,
        customer_category=sub.customer_category,
        account_type=sub.account_type,
        plan_code=sub.plan_code,
        status=SubscriptionStatus(sub.status),
        bars=tuple(BarOut.model_validate(b) for b in bars),
        vas=tuple(VasOut.model_validate(v) for v in vas),
        created_at=sub.created_at,
        activated_at=sub.activated_at,
        terminated_at=sub.terminated_at,
        updated_at=sub.updated_at,
    )


def _event_payload(
    values: Mapping[str, Any], bars: Iterable[str], vas: Iterable[str], change: str
) -> dict[str, Any]:
    bar_list = sorted(bars)
    return {
        "subscription_id": values["id"],
        "service_number": values["service_number"],
        "kind": str(values["kind"]),
        "customer_id": values["customer_id"],
        "billing_account_id": values["billing_account_id"],
        "org_path": values["org_path"],
        "status": str(values["status"]),
        "plan_code": values["plan_code"],
        "vas": sorted(vas),
        "bars": bar_list,
        "suspended": values["status"] == SubscriptionStatus.active and bool(bar_list),
        "change": change,
    }


def _record(
    uow: UnitOfWork, sub: Subscription, change: str, detail: dict[str, Any]
) -> SubscriptionOut:
    """Flush, audit and announce one change of ``sub``."""
    sub.updated_at = utcnow()
    uow.flush()
    out = _to_out(sub)
    uow.audit(f"inventory.subscription.{change}", "subscription", sub.id, detail)
    values = {name: getattr(sub, name) for name in _EVENT_FIELDS}
    uow.emit(
        EVENT_TOPIC,
        _event_payload(values, (str(b) for b in out.bar_types), out.vas_codes, change),
        key=sub.id,
    )
    return out


_EVENT_FIELDS = (
    "id",
    "service_number",
    "kind",
    "customer_id",
    "billing_account_id",
    "org_path",
    "status",
    "plan_code",
)


# -- creation: one write path for one line or many -------------------------------------


def create_subscription(
    uow: UnitOfWork, spec: NewSubscription | Mapping[str, Any]
) -> SubscriptionOut:
    """Create one line (pending unless ``spec.status`` is active) after checking its plan
    and VAS with the catalog. The same path as the batch."""
    sub_id = create_subscriptions_batch(uow, [spec])[0]
    return _to_out(_load(uow, sub_id))


def create_subscriptions_batch(
    uow: UnitOfWork, specs: Sequence[NewSubscription | Mapping[str, Any]]
) -> list[str]:
    """Create many lines with Core executemany (the seed, batch orders); returns their ids
    in input order. Everything is validated before anything is written: one bad item
    refuses the whole batch (its error names the item with the ``item`` param)."""
    uow.actor.require(WRITE)
    checker = _BatchChecker(uow)
    items: list[tuple[NewSubscription, str, str, list[str]]] = []
    for index, raw in enumerate(specs):
        try:
            items.append(_prepare(uow.actor, checker, _parse_new(raw)))
        except (ValidationError, NotFound) as exc:
            exc.params.setdefault("item", index)
            raise
    _check_numbers_free(uow, [number for _spec, number, _plan, _vas in items])

    now = utcnow()
    subs: list[dict[str, Any]] = []
    vas_rows: list[dict[str, Any]] = []
    actor_ref = _actor_ref(uow.actor)
    for spec, number, plan, vas_codes in items:
        values: dict[str, Any] = {
            "id": new_id(),
            "service_number": number,
            "kind": str(spec.kind),
            "customer_id": spec.customer_id,
            "billing_account_id": spec.billing_account_id,
            "org_path": spec.org_path,
            "customer_category": spec.customer_category,
            "account_type": spec.account_type,
            "plan_code": plan,
            "status": str(spec.status),
            "created_at": now,
            "activated_at": now if spec.status is SubscriptionStatus.active else None,
            "terminated_at": None,
            "updated_at": now,
        }
        subs.append(values)
        vas_rows.extend(
            {
                "id": new_id(),
                "subscription_id": values["id"],
                "customer_id": spec.customer_id,
                "org_path": spec.org_path,
                "code": code,
                "start_at": now,
                "end_at": None,
                "added_by": actor_ref,
                "removed_by": None,
            }
            for code in vas_codes
        )
    insert_many(uow.connection, table_of(Subscription), subs)
    insert_many(uow.connection, table_of(SubscriptionVas), vas_rows)
    for values, (_spec, _number, _plan, vas_codes) in zip(subs, items, strict=True):
        uow.audit(
            "inventory.subscription.created",
            "subscription",
            values["id"],
            {"plan": values["plan_code"], "vas": vas_codes, "status": values["status"]},
        )
        uow.emit(EVENT_TOPIC, _event_payload(values, (), vas_codes, "created"), key=values["id"])
    return [values["id"] for values in subs]


class _BatchChecker:
    """``EligibilityChecker.check`` asked once per distinct question of a batch.

    A batch asks the same few questions (this plan or VAS, for this category, account
    type and region, beside these codes) thousands of times, and within one batch the
    answer cannot change: one checker reads each offering once at one clock reading.
    Only passed checks are remembered; a refusal raises as before."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._checker = EligibilityChecker(uow)
        self._passed: set[tuple[Any, ...]] = set()

    def check(
        self,
        offering_code: str,
        *,
        kinds: Collection[str],
        customer_category: str,
        account_type: str,
        org_path: str,
        current_plan_code: str | None = None,
        current_vas_codes: Sequence[str] = (),
    ) -> None:
        vas = tuple(current_vas_codes)
        key = (
            offering_code,
            frozenset(kinds),
            customer_category,
            account_type,
            org_path,
            current_plan_code,
            vas,
        )
        if key in self._passed:
            return
        self._checker.check(
            offering_code,
            kinds=kinds,
            customer_category=customer_category,
            account_type=account_type,
            org_path=org_path,
            current_plan_code=current_plan_code,
            current_vas_codes=vas,
        )
        self._passed.add(key)


def _prepare(
    actor: Actor, checker: _BatchChecker, spec: NewSubscription
) -> tuple[NewSubscription, str, str, list[str]]:
    """Validate one new line: (spec, stored number, plan code, VAS codes)."""
    for field in ("customer_id", "billing_account_id"):
        if not _ID_RE.fullmatch(getattr(spec, field)):
            raise ValidationError(_("Invalid {field}"), field=field)
    if not _ORG_PATH_RE.fullmatch(spec.org_path):
        raise ValidationError(
            _("Invalid organisation path {org_path}: expected a path like /ROOT/GD/"),
            org_path=spec.org_path,
        )
    if not actor.sees(spec.org_path):
        raise NotFound(_("No such customer"))
    if spec.status is SubscriptionStatus.terminated:
        raise ValidationError(_("A new line is pending or active"))
    number = normalise_service_number(spec.kind, spec.service_number)
    plan = _norm_code(spec.plan_code)
    context = {
        "customer_category": spec.customer_category,
        "account_type": spec.account_type,
        "org_path": spec.org_path,
    }
    checker.check(plan, kinds=_PLAN_KINDS[spec.kind], **context)
    vas_codes: list[str] = []
    for raw in spec.vas_codes:
        code = _norm_code(raw)
        if code in vas_codes:
            raise ValidationError(
                _("Value-added service {offering} is listed twice"), offering=code
            )
        checker.check(
            code,
            kinds=VAS_KINDS,
            current_plan_code=plan,
            current_vas_codes=vas_codes,
            **context,
        )
        vas_codes.append(code)
    return spec, number, plan, vas_codes


def _check_numbers_free(uow: UnitOfWork, numbers: Sequence[str]) -> None:
    seen: set[str] = set()
    for index, number in enumerate(numbers):
        if number in seen:
            raise Conflict(_("The service number appears twice in the batch"), item=index)
        seen.add(number)
    table = Subscription.__table__
    ordered = sorted(seen)
    # The live-number condition as a constant, as the partial unique index states it: a
    # bound status would keep PostgreSQL's generic plan (psycopg prepares a statement
    # run five times) off that index, onto a scan comparing every line with every number.
    live = table.c.status != literal_column(f"'{SubscriptionStatus.terminated.value}'")
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        taken = uow.connection.execute(
            select(table.c.service_number).where(
                in_list(table.c.service_number, chunk, uow.dialect), live
            )
        ).first()
        if taken is not None:
            raise Conflict(
                _("The service number is already in use by another line"),
                item=numbers.index(str(taken.service_number)),
            )


# -- lifecycle -------------------------------------------------------------------------


def activate(uow: UnitOfWork, sub_id: str) -> SubscriptionOut:
    """Pending -> active (provisioning finished: the line works)."""
    sub = _load(uow, sub_id, for_update=True)
    sub.status = _authorise_change(uow.actor, sub, Change.activate)
    sub.activated_at = utcnow()
    return _record(uow, sub, "activated", {})


def terminate(uow: UnitOfWork, sub_id: str, reason: str) -> SubscriptionOut:
    """Pending or active -> terminated (拆机). Its VAS end now; its bars are kept as they
    stood, as the record of why the line was stopped. Nothing changes it afterwards."""
    text = _reason(reason)
    sub = _load(uow, sub_id, for_update=True)
    sub.status = _authorise_change(uow.actor, sub, Change.terminate)
    now = utcnow()
    sub.terminated_at = now
    ended = []
    for vas in sub.vas:
        if vas.end_at is None:
            vas.end_at = now
            vas.removed_by = _actor_ref(uow.actor)
            ended.append(vas.code)
    return _record(uow, sub, "terminated", {"reason": text, "vas_ended": sorted(ended)})


def change_plan(uow: UnitOfWork, sub_id: str, plan_code: str) -> SubscriptionOut:
    """Move the line to another base plan the customer is eligible for, which must keep
    every current VAS available."""
    sub = _load(uow, sub_id, for_update=True)
    _authorise_change(uow.actor, sub, Change.change_plan)
    code = _norm_code(plan_code)
    if code == sub.plan_code:
        raise ValidationError(_("The line already has plan {offering}"), offering=code)
    EligibilityChecker(uow).check(
        code,
        customer_category=sub.customer_category,
        account_type=sub.account_type,
        org_path=sub.org_path,
        current_vas_codes=[v.code for v in sub.vas if v.end_at is None],
        kinds={PLAN_KIND_FOR_LINE[LineKind(sub.kind)]},
    )
    previous, sub.plan_code = sub.plan_code, code
    return _record(uow, sub, "plan_changed", {"from": previous, "to": code})


def add_vas(uow: UnitOfWork, sub_id: str, vas_code: str) -> SubscriptionOut:
    sub = _load(uow, sub_id, for_update=True)
    _authorise_change(uow.actor, sub, Change.add_vas)
    code = _norm_code(vas_code)
    current = [v.code for v in sub.vas if v.end_at is None]
    if code in current:
        raise Conflict(_("Value-added service {offering} is already on this line"), offering=code)
    EligibilityChecker(uow).check(
        code,
        customer_category=sub.customer_category,
        account_type=sub.account_type,
        org_path=sub.org_path,
        current_plan_code=sub.plan_code,
        current_vas_codes=current,
        kinds=VAS_KINDS,
    )
    sub.vas.append(
        SubscriptionVas(
            id=new_id(),
            customer_id=sub.customer_id,
            org_path=sub.org_path,
            code=code,
            start_at=utcnow(),
            added_by=_actor_ref(uow.actor),
        )
    )
    return _record(uow, sub, "vas_added", {"vas": code})


def remove_vas(uow: UnitOfWork, sub_id: str, vas_code: str) -> SubscriptionOut:
    sub = _load(uow, sub_id, for_update=True)
    _authorise_change(uow.actor, sub, Change.remove_vas)
    code = _norm_code(vas_code)
    current = next((v for v in sub.vas if v.end_at is None and v.code == code), None)
    if current is None:
        raise Conflict(_("Value-added service {offering} is not on this line"), offering=code)
    current.end_at = utcnow()
    current.removed_by = _actor_ref(uow.actor)
    return _record(uow, sub, "vas_removed", {"vas": code})


# -- bars ------------------------------------------------------------------------------


def add_bar(uow: UnitOfWork, sub_id: str, bar: str, reason: str) -> SubscriptionOut:
    """Bar an active line (it becomes, or stays, suspended)."""
    kind = _parse_bar(bar)
    text = _reason(reason)
    sub = _load(uow, sub_id, for_update=True)
    _authorise_change(uow.actor, sub, Change.add_bar, kind)
    sub.bars.append(
        SubscriptionBar(
            id=new_id(),
            customer_id=sub.customer_id,
            org_path=sub.org_path,
            bar=str(kind),
            reason=text,
            placed_by=_actor_ref(uow.actor),
            placed_at=utcnow(),
        )
    )
    return _record(uow, sub, "bar_added", {"bar": str(kind), "reason": text})


def lift_bar(uow: UnitOfWork, sub_id: str, bar: str, reason: str) -> SubscriptionOut:
    """Lift one bar; the line resumes (复机) when it was the last one."""
    kind = _parse_bar(bar)
    text = _reason(reason)
    sub = _load(uow, sub_id, for_update=True)
    _authorise_change(uow.actor, sub, Change.lift_bar, kind)
    _lift(sub, kind, _actor_ref(uow.actor), text)
    return _record(uow, sub, "bar_lifted", {"bar": str(kind), "reason": text})


def _lift(sub: Subscription, bar: Bar, by: str, reason: str) -> None:
    now = utcnow()
    for row in sub.bars:
        if row.bar == bar and row.lifted_at is None:
            row.lifted_at = now
            row.lifted_by = by
            row.lift_reason = reason


def on_payment_received(
    uow: UnitOfWork, subscription: str, *, payment_ref: str | None = None
) -> tuple[Bar, ...]:
    """A payment reached the line (``subscription``: its id or live service number).

    Lifts ONLY the bars a payment clears (``credit``) and returns them; lost, admin,
    fraud and keep-number bars stay. A payment is never refused: on a line that is not
    active, or has no credit bar, this changes nothing and returns (). Not scoped to the
    actor's organisation (payments are accepted operator-wide); an unknown number or id
    raises NotFound, which the payments domain turns into held money.
    """
    sub = _load_for_payment(uow, subscription)
    try:
        _authorise_change(uow.actor, sub, Change.payment)
    except Conflict:
        return ()  # not active: nothing for a payment to lift, and a payment is never refused
    lifted = tuple(sorted(b for b in _open_bars(sub) if BAR_RULES[b].lifted_by_payment))
    if not lifted:
        return ()
    reason = f"payment {payment_ref}" if payment_ref else "payment"
    for bar in lifted:
        _lift(sub, bar, _actor_ref(uow.actor), reason)
    _record(
        uow,
        sub,
        "bar_lifted",
        {"bars": [str(b) for b in lifted], "reason": reason, "by_payment": True},
    )
    return lifted


def on_account_payment(
    uow: UnitOfWork, billing_account_id: str, *, payment_ref: str | None = None
) -> dict[str, tuple[Bar, ...]]:
    """A payment reached a billing account: ``on_payment_received`` for each of its live
    lines (operator-wide, like any payment). Returns {subscription id: bars lifted} for
    the lines where something was lifted."""
    CHANGE_WHO[Change.payment].check(uow.actor, owner_id="")
    ids = uow.session.scalars(
        select(Subscription.id)
        .where(
            Subscription.billing_account_id == billing_account_id,
            Subscription.status != SubscriptionStatus.terminated,
        )
        .order_by(Subscription.id)
    ).all()
    lifted = {sub_id: on_payment_received(uow, sub_id, payment_ref=payment_ref) for sub_id in ids}
    return {sub_id: bars for sub_id, bars in lifted.items() if bars}


# -- the payment hot path ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayableLine:
    """A live line a payment can be made to (PROTOCOL.md: a number is *payable* when it
    exists and is not terminated; barred or suspended lines can be paid)."""

    subscription_id: str
    service_number: str
    billing_account_id: str
    customer_id: str
    org_path: str
    status: str


_SUBSCRIPTIONS = table_of(Subscription)
# ``= ANY(array)`` on PostgreSQL (``db.in_parameter``: one query text whatever the
# number of forms), and the live condition as a constant, as the partial index on live
# numbers states it (a bound one keeps PostgreSQL's generic plan off that index).
_PAYABLE = PerDialect(
    lambda dialect: select(
        _SUBSCRIPTIONS.c.id,
        _SUBSCRIPTIONS.c.service_number,
        _SUBSCRIPTIONS.c.billing_account_id,
        _SUBSCRIPTIONS.c.customer_id,
        _SUBSCRIPTIONS.c.org_path,
        _SUBSCRIPTIONS.c.status,
    ).where(
        in_parameter(_SUBSCRIPTIONS.c.service_number, "forms", dialect),
        _SUBSCRIPTIONS.c.status != literal_column(f"'{SubscriptionStatus.terminated.value}'"),
    )
)


def payable_lines(conn: Connection, numbers: Collection[str]) -> dict[str, PayableLine]:
    """The live line of each payable number, keyed by the number as given (every stored
    form of it is tried: ``+86``, dashes...); numbers with no live line are absent.

    Core and one query per call, for the kiosk money path and MSISDN_CHECK: no actor and
    no organisation scope (a customer may pay at any kiosk of the operator, 通缴); the
    caller has authenticated the terminal."""
    forms_of = {number: _lookup_forms(number) for number in numbers}
    wanted = sorted({form for forms in forms_of.values() for form in forms})
    if not wanted:
        return {}
    found: dict[str, PayableLine] = {}
    for start in range(0, len(wanted), 500):
        for row in fetch(conn, _PAYABLE(conn), {"forms": wanted[start : start + 500]}):
            found[row.service_number] = PayableLine(
                row.id,
                row.service_number,
                row.billing_account_id,
                row.customer_id,
                row.org_path,
                row.status,
            )
    result: dict[str, PayableLine] = {}
    for number, forms in forms_of.items():
        line = next((found[form] for form in forms if form in found), None)
        if line is not None:
            result[number] = line
    return result


# -- reads -----------------------------------------------------------------------------


def get_subscription(uow: UnitOfWork, sub_id: str) -> SubscriptionOut:
    _require_read(uow.actor)
    return _to_out(_load(uow, sub_id))


def find_by_service_number(
    uow: UnitOfWork, service_number: str, *, include_terminated: bool = False
) -> SubscriptionOut:
    """The live line with this number; with ``include_terminated``, the most recently
    terminated one when no line is live."""
    _require_read(uow.actor)
    try:
        return _to_out(_one(uow, _live_by_number(service_number), False))
    except NotFound:
        if not include_terminated:
            raise
    query = (
        _scoped(uow.actor, select(Subscription))
        .where(Subscription.service_number.in_(_lookup_forms(service_number)))
        .order_by(Subscription.terminated_at.desc(), Subscription.id.desc())
    )
    return _to_out(_one(uow, query, False))


def _scoped(actor: Actor, query: Any) -> Any:
    """Only the lines ``actor`` may see: its own (a customer) or its subtree's."""
    if actor.kind is ActorKind.customer:
        return query.where(Subscription.customer_id == actor.id)
    return query.where(actor.scope(Subscription.org_path))


def _list(uow: UnitOfWork, condition: Any, include_terminated: bool) -> list[SubscriptionOut]:
    _require_read(uow.actor)
    query = _scoped(uow.actor, select(Subscription).where(condition))
    if not include_terminated:
        query = query.where(Subscription.status != SubscriptionStatus.terminated)
    query = query.order_by(Subscription.created_at, Subscription.id)
    return [_to_out(sub) for sub in uow.session.scalars(query)]


def list_for_customer(
    uow: UnitOfWork, customer_id: str, *, include_terminated: bool = True
) -> list[SubscriptionOut]:
    """A customer's lines in creation order (only those in the actor's subtree)."""
    return _list(uow, Subscription.customer_id == customer_id, include_terminated)


def list_for_billing_account(
    uow: UnitOfWork, billing_account_id: str, *, include_terminated: bool = False
) -> list[SubscriptionOut]:
    """The lines paid from one billing account (what a payment to the account concerns)."""
    return _list(uow, Subscription.billing_account_id == billing_account_id, include_terminated)


# -- paged reads for integrations (TMF637) -----------------------------------------------

# What a line is in the words integrators filter by: the stored status, except that an
# active line with an open bar is "suspended" (停机). An SQL expression, so the filter
# runs in the database before paging.
_HAS_OPEN_BAR = (
    exists()
    .where(
        SubscriptionBar.subscription_id == Subscription.id,
        SubscriptionBar.lifted_at.is_(None),
    )
    .correlate(Subscription)
)
STATE = case(
    (and_(Subscription.status == SubscriptionStatus.active, _HAS_OPEN_BAR), "suspended"),
    else_=Subscription.status,
)
STATES = ("pending", "active", "suspended", "terminated")


def _parse_state(value: str) -> str:
    if value not in STATES:
        raise ValueError(value)
    return value


def _canonical_number(value: str) -> str:
    """The stored form of a number whatever its kind (+86 / dashes / spaces dropped)."""
    for kind in (LineKind.mobile, LineKind.fixed_line):
        try:
            return normalise_service_number(kind, value)
        except ValidationError:
            continue
    return value.strip()


SUBSCRIPTION_FILTERS: Mapping[str, FilterField] = {
    "id": FilterField(Subscription.id),
    "state": FilterField(STATE, _parse_state),
    "kind": FilterField(Subscription.kind),
    "customer_id": FilterField(Subscription.customer_id),
    "billing_account_id": FilterField(Subscription.billing_account_id),
    "plan_code": FilterField(Subscription.plan_code, lambda v: v.strip().upper()),
    "service_number": FilterField(Subscription.service_number, _canonical_number),
    "activated_at": FilterField(Subscription.activated_at, parse_datetime, ordered=True),
    "terminated_at": FilterField(Subscription.terminated_at, parse_datetime, ordered=True),
}


def page_subscriptions(uow: UnitOfWork, list_query: ListQuery) -> tuple[list[SubscriptionOut], int]:
    """One page of the lines the actor may see that match ``list_query`` (fields:
    ``SUBSCRIPTION_FILTERS``; ``state`` is one of ``STATES``), oldest first, and their
    total. Needs ``inventory.read``; terminated lines are included unless filtered out."""
    _require_read(uow.actor)
    query = _scoped(uow.actor, select(Subscription)).where(
        *where_clauses(list_query.conditions, SUBSCRIPTION_FILTERS)
    )
    rows, total = fetch_page(
        uow.session, query, list_query, order_by=[Subscription.created_at, Subscription.id]
    )
    return [_to_out(sub) for sub in rows], total


# -- aggregates for reports ------------------------------------------------------------
# Figures only (no line, no customer): they need ``reports.read``, not ``inventory.read``.


def count_lines_by_plan(uow: UnitOfWork) -> dict[str, int]:
    """Live (not terminated) lines the actor may see, counted per plan code."""
    uow.actor.require("reports.read")
    query = (
        select(Subscription.plan_code, func.count())
        .where(
            uow.actor.scope(Subscription.org_path),
            Subscription.status != SubscriptionStatus.terminated.value,
        )
        .group_by(Subscription.plan_code)
    )
    return {code: int(count) for code, count in uow.session.execute(query)}


def count_open_bars(uow: UnitOfWork) -> dict[str, int]:
    """Lines the actor may see with an open bar, counted per bar type (a line with two
    open bars counts once under each)."""
    uow.actor.require("reports.read")
    query = (
        select(SubscriptionBar.bar, func.count(func.distinct(SubscriptionBar.subscription_id)))
        .where(uow.actor.scope(SubscriptionBar.org_path), SubscriptionBar.lifted_at.is_(None))
        .group_by(SubscriptionBar.bar)
    )
    return {bar: int(count) for bar, count in uow.session.execute(query)}
