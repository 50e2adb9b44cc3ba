"""Use cases of the customers domain: the only code that changes its state.

Sections: registration (one write path for one customer or a seed batch of thousands),
reads and search (scoped to the actor's organisation subtree), identity documents
(the audited sensitive read), billing accounts, service numbers and their passwords, and
customer authentication (PROTOCOL.md "Customer authentication", docs/customer-auth.md).

Every function takes the caller's ``UnitOfWork`` first, flushes, never commits. The one
exception to "the caller's transaction decides" is a failed login: a failure must count
even though the caller rolls its unit of work back on the error we raise, so the failure
is written in the unit of work *and*, should that transaction end without a commit,
written again, idempotently, in a short transaction of its own once the caller's
transaction has ended (``_after_root_transaction``).

Permissions: ``customers.read``, ``customers.write``, ``customers.read_sensitive``.
Customer authentication needs none: it is how an anonymous channel (a kiosk, the
self-care site) becomes a customer, and is protected by throttles and lockouts instead.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import psycopg
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Table,
    bindparam,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from teleserve.core import audit, crypto
from teleserve.core.clock import as_utc, business_date, utcnow
from teleserve.core.db import insert_many
from teleserve.core.errors import (
    AuthenticationFailed,
    Conflict,
    Locked,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationError,
)
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.logging import get_logger
from teleserve.core.masking import mask_email, mask_id_number, mask_name, mask_phone
from teleserve.core.query import (
    Condition,
    FilterField,
    ListQuery,
    Op,
    fetch_page,
    parse_datetime,
    where_clauses,
)
from teleserve.core.sequences import RecordSequence
from teleserve.core.settings import Settings, get_settings
from teleserve.core.throttle import Rate, get_throttle
from teleserve.core.uow import UnitOfWork
from teleserve.customers import passwords
from teleserve.customers.models import (
    AccountKind,
    AccountStatus,
    AuthFactor,
    BillingAccount,
    ContactKind,
    ContactMedium,
    Customer,
    CustomerCategory,
    CustomerStatus,
    IdentityDocument,
    Individual,
    Organization,
    ServiceCredential,
    account_table,
    auth_failure_table,
    auth_state_table,
    contact_table,
    credential_table,
    customer_table,
    document_table,
    individual_table,
    organization_table,
    otp_table,
    session_table,
)
from teleserve.customers.schemas import (
    AccountRecord,
    AccountSpec,
    BillingAccountView,
    ContactMediumView,
    CustomerAuth,
    CustomerDetail,
    CustomerRecord,
    CustomerRegistration,
    CustomerSummary,
    CustomerToken,
    IdentityDocumentView,
    OtpSent,
    PartyView,
    Registered,
    ServiceNumberSpec,
)
from teleserve.customers.validation import (
    Gender,
    IdType,
    canonical_document_number,
    normalize_address,
    normalize_credit_code,
    normalize_email,
    normalize_id_number,
    normalize_mobile,
    normalize_name,
    normalize_org_path,
    normalize_service_number,
    parse_resident_id,
)
from teleserve.notify import service as notify

log = get_logger("teleserve.customers")

READ = "customers.read"
WRITE = "customers.write"
READ_SENSITIVE = "customers.read_sensitive"

ID_PURPOSE = "id_number"  # crypto purpose of ID numbers (encryption and blind index)
CUSTOMER_PREFIX = "C"
ACCOUNT_PREFIX = "BA"
SEARCH_LIMIT_MAX = 200
# A lookup chunk: well under SQLite's bound-parameter limit.
_CHUNK = 500
# The face-match pass mark when the operator's settings do not name one (PROTOCOL.md).
DEFAULT_FACE_MATCH_PASS_MARK = 80
_TOKEN_BYTES = 32  # 256 bits, sent as 64 hex digits

# Billing account transitions, checked in one place.
_ACCOUNT_TRANSITIONS: dict[str, frozenset[str]] = {
    AccountStatus.active: frozenset({AccountStatus.closed}),
    AccountStatus.closed: frozenset(),
}


# =====================================================================================
# Registration
# =====================================================================================


@dataclass
class _Prepared:
    """One validated registration, ready to insert."""

    category: CustomerCategory
    name: str
    org_unit_id: str
    org_path: str
    gender: str | None = None
    birth_date: date | None = None
    doc_type: str | None = None
    doc_number: str | None = None
    doc_index: str | None = None
    credit_code: str | None = None
    contacts: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[AccountSpec] = field(default_factory=list)
    services: list[ServiceNumberSpec] = field(default_factory=list)


def register_individual(
    uow: UnitOfWork,
    *,
    name: str,
    id_number: str,
    org_unit_id: str,
    org_path: str,
    id_type: IdType | str = IdType.resident_id,
    gender: Gender | str | None = None,
    mobile: str | None = None,
    email: str | None = None,
    address: str | None = None,
    accounts: Sequence[AccountSpec] = (),
) -> CustomerDetail:
    """Register a person (个人客户) with one identity document and optional contacts."""
    spec = _spec(
        category=CustomerCategory.individual,
        name=name,
        org_unit_id=org_unit_id,
        org_path=org_path,
        id_type=str(id_type),
        id_number=id_number,
        gender=None if gender is None else str(gender),
        mobile=mobile,
        email=email,
        address=address,
        accounts=tuple(accounts),
    )
    (registered,) = _register(uow, [spec])
    return get_customer(uow, registered.customer_id)


def register_organization(
    uow: UnitOfWork,
    *,
    name: str,
    credit_code: str,
    org_unit_id: str,
    org_path: str,
    mobile: str | None = None,
    email: str | None = None,
    address: str | None = None,
    accounts: Sequence[AccountSpec] = (),
) -> CustomerDetail:
    """Register an organisation (政企客户) by its unified social credit code."""
    spec = _spec(
        category=CustomerCategory.organisation,
        name=name,
        org_unit_id=org_unit_id,
        org_path=org_path,
        credit_code=credit_code,
        mobile=mobile,
        email=email,
        address=address,
        accounts=tuple(accounts),
    )
    (registered,) = _register(uow, [spec])
    return get_customer(uow, registered.customer_id)


def _spec(**values: Any) -> CustomerRegistration:
    try:
        return CustomerRegistration(**values)
    except PydanticValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
        raise ValidationError(
            _("Invalid value for {fields}"), code="invalid_fields", fields=fields
        ) from None


def register_customers_batch(
    uow: UnitOfWork, registrations: Sequence[CustomerRegistration]
) -> list[Registered]:
    """Register many customers at once (the seed, bulk imports): every row is validated
    as a single registration is, then written with one multi-row insert per table. A bad
    row refuses the whole batch (its index is in the error's ``row`` param)."""
    return _register(uow, registrations)


def _register(uow: UnitOfWork, specs: Sequence[CustomerRegistration]) -> list[Registered]:
    uow.actor.require(WRITE)
    # One clock reading for the batch's birth-date checks (the date cannot move much
    # within a batch, and reading it per row was a visible share of a bulk seed's CPU).
    today = business_date()
    prepared = []
    for row, spec in enumerate(specs):
        try:
            prepared.append(_prepare(uow, spec, today))
        except ValidationError as exc:
            raise ValidationError(exc.message, code=exc.code, row=row, **exc.params) from None
    if not prepared:
        return []
    _check_batch_duplicates(prepared)
    return _insert(uow, prepared)


def _prepare(uow: UnitOfWork, spec: CustomerRegistration, today: date) -> _Prepared:
    org_path = normalize_org_path(spec.org_path)
    if not uow.actor.sees(org_path):
        raise PermissionDenied(_("You cannot register customers outside your organisation"))
    if not spec.org_unit_id or len(spec.org_unit_id) > 32:
        raise ValidationError(_("The organisation unit is missing"), code="org_unit_missing")
    item = _Prepared(
        category=spec.category,
        name=normalize_name(spec.name, max_length=100 if _is_person(spec) else 200),
        org_unit_id=spec.org_unit_id,
        org_path=org_path,
    )
    if spec.category is CustomerCategory.individual:
        _prepare_person(item, spec, today)
    else:
        if not spec.credit_code:
            raise ValidationError(
                _("An organisation needs its unified social credit code"),
                code="credit_code_missing",
            )
        item.credit_code = normalize_credit_code(spec.credit_code)
    if spec.mobile:
        item.contacts.append((ContactKind.mobile, normalize_mobile(spec.mobile)))
    if spec.email:
        item.contacts.append((ContactKind.email, normalize_email(spec.email)))
    if spec.address:
        item.contacts.append((ContactKind.address, normalize_address(spec.address)))
    item.accounts = [_checked_account_spec(a) for a in spec.accounts]
    for service in spec.service_numbers:
        number = normalize_service_number(service.service_number)
        if service.password_hash is not None and not service.password_hash.startswith("$argon2id$"):
            raise ValidationError(
                _("A precomputed service password must be an argon2id hash"),
                code="password_hash_invalid",
            )
        # The specs are frozen: one already in its canonical form is kept as it is.
        item.services.append(
            service
            if number == service.service_number
            else ServiceNumberSpec(service_number=number, password_hash=service.password_hash)
        )
    return item


def _is_person(spec: CustomerRegistration) -> bool:
    return spec.category is CustomerCategory.individual


def _prepare_person(item: _Prepared, spec: CustomerRegistration, today: date) -> None:
    if not spec.id_number:
        raise ValidationError(
            _("A person needs an identity document number"), code="id_number_missing"
        )
    try:
        id_type = IdType(spec.id_type or IdType.resident_id)
    except ValueError:
        raise ValidationError(
            _("Unknown identity document type {id_type}"), id_type=str(spec.id_type)
        ) from None
    gender = _check_gender(spec.gender)
    if id_type in (IdType.resident_id, IdType.hmt_residence_permit):
        # The number itself says when and of which sex its holder was born.
        parsed = parse_resident_id(
            spec.id_number, permit=id_type is IdType.hmt_residence_permit, today=today
        )
        if gender is not None and gender != parsed.gender:
            raise ValidationError(
                _("The gender does not match the ID number"), code="gender_mismatch"
            )
        number, gender, item.birth_date = parsed.number, parsed.gender, parsed.birth_date
    else:
        number = normalize_id_number(id_type, spec.id_number)
    item.gender = gender
    item.doc_type = id_type
    item.doc_number = number
    item.doc_index = _id_index(number)


def _check_gender(value: str | None) -> Gender | None:
    if value is None:
        return None
    try:
        return Gender(value)
    except ValueError:
        raise ValidationError(_("Unknown gender {gender}"), gender=value) from None


def _id_index(normalised_number: str) -> str:
    return crypto.blind_index(normalised_number, ID_PURPOSE)


_ID_TAKEN = _("A customer with this identity document is already registered")
_CODE_TAKEN = _("An organisation with this unified social credit code is already registered")
_NUMBER_TAKEN = _("This service number already belongs to a customer")


def _check_batch_duplicates(prepared: Sequence[_Prepared]) -> None:
    """Refuse a batch that repeats a document, a credit code or a service number. Rows
    that exist already are refused by the unique indexes when inserting (``_insert``)."""
    doc_keys = [(p.doc_index, p.doc_type) for p in prepared if p.doc_index]
    codes = [p.credit_code for p in prepared if p.credit_code]
    numbers = [s.service_number for p in prepared for s in p.services]
    if len(set(doc_keys)) != len(doc_keys):
        raise Conflict(_ID_TAKEN, code="id_number_taken")
    if len(set(codes)) != len(codes):
        raise Conflict(_CODE_TAKEN, code="credit_code_taken")
    if len(set(numbers)) != len(numbers):
        raise Conflict(_NUMBER_TAKEN, code="service_number_taken")


def _conflict(error: Exception) -> Conflict:
    """The Conflict for a unique index violation, named after the table that refused."""
    text = str(getattr(error, "orig", None) or error)
    if document_table.name in text:
        return Conflict(_ID_TAKEN, code="id_number_taken")
    if organization_table.name in text:
        return Conflict(_CODE_TAKEN, code="credit_code_taken")
    if credential_table.name in text:
        return Conflict(_NUMBER_TAKEN, code="service_number_taken")
    return Conflict(
        _("The same customer was just registered by someone else; search for it"),
        code="customer_taken",
    )


def _reserve_numbers(conn: Connection, prefix: str, count: int) -> list[str]:
    """``count`` consecutive readable numbers (``C20261125000001``...) in one statement.

    Same format and counter rows as ``core.sequences.next_number``, which reserves one.
    """
    if count == 0:
        return []
    settings = get_settings()
    day = business_date(tz=settings.timezone).strftime("%Y%m%d")
    table = cast(Table, RecordSequence.__table__)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(name=prefix + day, value=count)
        .on_conflict_do_update(index_elements=[table.c.name], set_={"value": table.c.value + count})
        .returning(table.c.value)
    )
    last = int(conn.execute(statement).scalar_one())
    return [f"{prefix}{day}{n:06d}" for n in range(last - count + 1, last + 1)]


def _insert(uow: UnitOfWork, prepared: Sequence[_Prepared]) -> list[Registered]:
    """Write validated registrations with one bulk insert per table (Core), inside a
    savepoint: a row refused by a unique index leaves the transaction as it was."""
    try:
        with uow.session.begin_nested():
            conn = uow.connection
            numbers = _reserve_numbers(conn, CUSTOMER_PREFIX, len(prepared))
            account_count = sum(len(p.accounts) for p in prepared)
            account_numbers = iter(_reserve_numbers(conn, ACCOUNT_PREFIX, account_count))
            rows, results = _registration_rows(prepared, numbers, account_numbers)
            for table, table_rows in rows.items():  # in foreign-key order
                _insert_many(conn, table, table_rows)
    except (IntegrityError, psycopg.IntegrityError) as error:
        raise _conflict(error) from None
    for item, registered in zip(prepared, results, strict=True):
        uow.audit(
            "customer.registered",
            "customer",
            registered.customer_id,
            {
                "number": registered.number,
                "category": str(item.category),
                "org_path": item.org_path,
                "accounts": list(registered.account_numbers),
                "service_numbers": [mask_phone(s.service_number) for s in item.services],
            },
        )
    return results


def _registration_rows(
    prepared: Sequence[_Prepared], numbers: Sequence[str], account_numbers: Iterator[str]
) -> tuple[dict[Table, list[dict[str, Any]]], list[Registered]]:
    """Every row to insert, by table in foreign-key order, and what each customer got."""
    now = utcnow()
    tables = (
        customer_table,
        individual_table,
        organization_table,
        document_table,
        contact_table,
        account_table,
        credential_table,
    )
    rows: dict[Table, list[dict[str, Any]]] = {table: [] for table in tables}
    results: list[Registered] = []
    for item, number in zip(prepared, numbers, strict=True):
        customer_id = new_id()
        for table, values in _party_rows(item, customer_id, number, now):
            rows[table].append(values)
        accounts = [
            _account_values(customer_id, item.org_path, spec, next(account_numbers), now)
            for spec in item.accounts
        ]
        rows[account_table].extend(accounts)
        rows[credential_table].extend(
            _credential_values(customer_id, item.org_path, s.service_number, s.password_hash, now)
            for s in item.services
        )
        results.append(
            Registered(
                customer_id=customer_id,
                number=number,
                account_ids=tuple(a["id"] for a in accounts),
                account_numbers=tuple(a["number"] for a in accounts),
                id_index=item.doc_index,
            )
        )
    return rows, results


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in the fewest round trips: one
    ``executemany`` on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL, where psycopg's
    ``executemany`` sends one statement per row and multi-row ``VALUES`` statements cost
    more to build and parse than they save (``core.db.insert_many``; figures in
    docs/customer-auth.md, "Bulk registration")."""
    insert_many(conn, table, rows)


def _party_rows(
    item: _Prepared, customer_id: str, number: str, now: datetime
) -> list[tuple[Table, dict[str, Any]]]:
    """The customer row, its party row, identity document and contact media."""
    owned = {"customer_id": customer_id, "org_path": item.org_path, "created_at": now}
    rows: list[tuple[Table, dict[str, Any]]] = [
        (
            customer_table,
            {
                "id": customer_id,
                "number": number,
                "category": str(item.category),
                "status": str(CustomerStatus.active),
                "name": item.name,
                "org_unit_id": item.org_unit_id,
                "org_path": item.org_path,
                "created_at": now,
                "updated_at": now,
            },
        )
    ]
    if item.category is CustomerCategory.individual:
        assert item.doc_number is not None
        person = {"id": new_id(), "name": item.name, "gender": item.gender, **owned}
        rows.append((individual_table, {**person, "birth_date": item.birth_date}))
        document = {
            "id": new_id(),
            "doc_type": str(item.doc_type),
            "number_encrypted": crypto.encrypt(item.doc_number, ID_PURPOSE),
            "number_index": item.doc_index,
            "number_masked": mask_id_number(item.doc_number),
        }
        rows.append((document_table, {**document, **owned}))
    else:
        organization = {"id": new_id(), "name": item.name, "credit_code": item.credit_code}
        rows.append((organization_table, {**organization, **owned}))
    for position, (kind, value) in enumerate(item.contacts):
        contact = {"id": new_id(), "kind": str(kind), "value": value, "preferred": position == 0}
        rows.append((contact_table, {**contact, **owned}))
    return rows


def _account_values(
    customer_id: str, org_path: str, spec: AccountSpec, number: str, now: datetime
) -> dict[str, Any]:
    """A new billing account row: the one shape for registrations and later openings."""
    return {
        "id": new_id(),
        "number": number,
        "customer_id": customer_id,
        "org_path": org_path,
        "kind": str(spec.kind),
        "status": str(AccountStatus.active),
        "credit_limit": spec.credit_limit,
        "bill_cycle_day": spec.bill_cycle_day,
        "created_at": now,
        "closed_at": None,
    }


def _credential_values(
    customer_id: str, org_path: str, number: str, password_hash: str | None, now: datetime
) -> dict[str, Any]:
    """A service number's row: the one shape for registrations and later links."""
    return {
        "id": new_id(),
        "service_number": number,
        "customer_id": customer_id,
        "org_path": org_path,
        "password_hash": password_hash,
        "password_set_at": now if password_hash else None,
        "created_at": now,
    }


# =====================================================================================
# Reads and search
# =====================================================================================


# A result row of any width: the read paths below build views from ORM objects and from
# Core rows with the same attribute names alike.
AnyRow = Row[*tuple[Any, ...]]


def _customer_row(uow: UnitOfWork, customer_id: str, *, lock: bool = False) -> Customer:
    """The customer, if it exists inside the actor's subtree (else NotFound, alike)."""
    query = select(Customer).where(Customer.id == customer_id, uow.actor.scope(Customer.org_path))
    if lock:
        query = query.with_for_update()
    customer = uow.session.scalars(query).first()
    if customer is None:
        raise NotFound(_("No such customer"), code="customer_not_found")
    return customer


def _display_name(customer: Customer | AnyRow) -> str:
    if customer.category == CustomerCategory.individual:
        return mask_name(customer.name)
    return customer.name


def _summary(customer: Customer) -> CustomerSummary:
    return CustomerSummary(
        id=customer.id,
        number=customer.number,
        category=customer.category,
        status=customer.status,
        name=_display_name(customer),
        org_unit_id=customer.org_unit_id,
        org_path=customer.org_path,
        created_at=customer.created_at,
    )


def _account_view(account: BillingAccount | AnyRow) -> BillingAccountView:
    return BillingAccountView(
        id=account.id,
        number=account.number,
        customer_id=account.customer_id,
        kind=account.kind,
        status=account.status,
        credit_limit=account.credit_limit,
        bill_cycle_day=account.bill_cycle_day,
        org_path=account.org_path,
        created_at=account.created_at,
        closed_at=account.closed_at,
    )


def _contact_view(contact: ContactMedium | AnyRow) -> ContactMediumView:
    value = contact.value
    if contact.kind == ContactKind.mobile:
        value = mask_phone(value)
    elif contact.kind == ContactKind.email:
        value = mask_email(value)
    return ContactMediumView(
        id=contact.id, kind=contact.kind, value=value, preferred=contact.preferred
    )


def get_customer(uow: UnitOfWork, customer_id: str) -> CustomerDetail:
    """One customer with documents (masked), contacts, accounts and service numbers."""
    uow.actor.require(READ)
    customer = _customer_row(uow, customer_id)
    session = uow.session
    gender: str | None = None
    credit_code: str | None = None
    if customer.category == CustomerCategory.individual:
        gender = session.scalars(
            select(Individual.gender).where(Individual.customer_id == customer.id)
        ).first()
    else:
        credit_code = session.scalars(
            select(Organization.credit_code).where(Organization.customer_id == customer.id)
        ).first()
    documents = session.scalars(
        select(IdentityDocument)
        .where(IdentityDocument.customer_id == customer.id)
        .order_by(IdentityDocument.created_at, IdentityDocument.id)
    ).all()
    contacts = session.scalars(
        select(ContactMedium)
        .where(ContactMedium.customer_id == customer.id)
        .order_by(ContactMedium.created_at, ContactMedium.id)
    ).all()
    accounts = session.scalars(
        select(BillingAccount)
        .where(BillingAccount.customer_id == customer.id)
        .order_by(BillingAccount.created_at, BillingAccount.number)
    ).all()
    services = session.scalars(
        select(ServiceCredential.service_number)
        .where(ServiceCredential.customer_id == customer.id)
        .order_by(ServiceCredential.service_number)
    ).all()
    return CustomerDetail(
        **_summary(customer).model_dump(),
        gender=gender,
        credit_code=credit_code,
        documents=tuple(
            IdentityDocumentView(id=d.id, doc_type=d.doc_type, number_masked=d.number_masked)
            for d in documents
        ),
        contacts=tuple(_contact_view(c) for c in contacts),
        accounts=tuple(_account_view(a) for a in accounts),
        service_numbers=tuple(mask_phone(s) for s in services),
    )


def search_customers(
    uow: UnitOfWork,
    *,
    name: str | None = None,
    service_number: str | None = None,
    id_number: str | None = None,
    number: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[CustomerSummary]:
    """Customers in the actor's subtree matching every criterion given: ``name`` by
    prefix, ``service_number`` exactly (a line or a contact mobile), ``id_number`` exactly
    through its blind index, ``number`` (the customer number, ``C…``) exactly. At least
    one criterion is required. ``offset`` skips that many matches (paging)."""
    uow.actor.require(READ)
    name = " ".join((name or "").split())
    service_number = (service_number or "").strip()
    id_number = (id_number or "").strip()
    number = (number or "").strip().upper()
    if not (name or service_number or id_number or number):
        raise ValidationError(
            _("Give a name, a service number or an ID number to search for"),
            code="search_empty",
        )
    if not 1 <= limit <= SEARCH_LIMIT_MAX:
        raise ValidationError(_("The search limit is between 1 and {max}"), max=SEARCH_LIMIT_MAX)
    if offset < 0:
        raise ValidationError(_("offset must be zero or more"), code="invalid_offset")
    query = select(Customer).where(uow.actor.scope(Customer.org_path))
    if number:
        query = query.where(Customer.number == number)
    if name:
        query = query.where(Customer.name.startswith(name, autoescape=True))
    if id_number:
        index = _id_index(canonical_document_number(id_number))
        query = query.where(
            Customer.id.in_(
                select(IdentityDocument.customer_id).where(IdentityDocument.number_index == index)
            )
        )
    if service_number:
        number = normalize_service_number(service_number)
        owns_line = Customer.id.in_(
            select(ServiceCredential.customer_id).where(ServiceCredential.service_number == number)
        )
        mobile = _mobile_or_none(number)
        if mobile is None:
            query = query.where(owns_line)
        else:
            has_mobile = Customer.id.in_(
                select(ContactMedium.customer_id).where(
                    ContactMedium.kind == ContactKind.mobile, ContactMedium.value == mobile
                )
            )
            query = query.where(or_(owns_line, has_mobile))
    query = query.order_by(Customer.name, Customer.number).offset(offset).limit(limit)
    return [_summary(c) for c in uow.session.scalars(query)]


def _mobile_or_none(number: str) -> str | None:
    try:
        return normalize_mobile(number)
    except ValidationError:
        return None


def reveal_id_number(uow: UnitOfWork, customer_id: str, document_id: str | None = None) -> str:
    """The full number of a customer's identity document (the first one by default):
    a sensitive read, audited, needing ``customers.read_sensitive``."""
    uow.actor.require(READ_SENSITIVE)
    _require_writable(uow)
    customer = _customer_row(uow, customer_id)
    query = select(IdentityDocument).where(IdentityDocument.customer_id == customer.id)
    if document_id is not None:
        query = query.where(IdentityDocument.id == document_id)
    document = uow.session.scalars(
        query.order_by(IdentityDocument.created_at, IdentityDocument.id)
    ).first()
    if document is None:
        raise NotFound(_("No such identity document"), code="document_not_found")
    number = crypto.decrypt(document.number_encrypted, ID_PURPOSE)
    uow.audit(
        "customer.id_number_revealed",
        "customer",
        customer.id,
        {
            "document_id": document.id,
            "doc_type": document.doc_type,
            "number": document.number_masked,
        },
    )
    return number


def audit_trail(
    uow: UnitOfWork,
    customer_id: str,
    *,
    related: Sequence[tuple[str, str]] = (),
    limit: int = 20,
    offset: int = 0,
) -> list[audit.AuditEntry]:
    """The audit records about a customer, newest first: those whose subject is the
    customer itself (registration, accounts, service numbers and passwords, ID reveals,
    logins) and those about ``related`` (subject type, id) pairs — the customer's lines,
    payments... that the caller read for this customer through their own domains'
    scoped services (this domain cannot see their tables).

    Needs ``customers.read`` and a customer inside the actor's subtree, not ``audit.read``:
    the trail is part of the customer record an agent already sees at the counter, and
    the records it shows carry masked data only. Reading the whole audit log (any subject,
    any actor) is what ``audit.read`` is for."""
    uow.actor.require(READ)
    if not 1 <= limit <= SEARCH_LIMIT_MAX:
        raise ValidationError(_("The search limit is between 1 and {max}"), max=SEARCH_LIMIT_MAX)
    if offset < 0:
        raise ValidationError(_("offset must be zero or more"), code="invalid_offset")
    customer = _customer_row(uow, customer_id)
    subjects = [("customer", customer.id), *related]
    return audit.records_about(uow.connection, subjects, limit=limit, offset=offset)


def _require_writable(uow: UnitOfWork) -> None:
    # The audit record of a sensitive read (or an auth failure) is written at commit.
    if uow.readonly:
        raise RuntimeError("this operation is audited: it needs a writable unit of work")


# =====================================================================================
# Billing accounts
# =====================================================================================


def _check_account(kind: AccountKind | str, credit_limit: int, bill_cycle_day: int) -> AccountSpec:
    account_kind = _checked_account_kind(kind, credit_limit, bill_cycle_day)
    return AccountSpec(kind=account_kind, credit_limit=credit_limit, bill_cycle_day=bill_cycle_day)


def _checked_account_spec(spec: AccountSpec) -> AccountSpec:
    """``_check_account`` of a spec: the spec itself when its kind is already an
    ``AccountKind`` (specs are frozen), so a bulk registration builds no copy per row."""
    kind = _checked_account_kind(spec.kind, spec.credit_limit, spec.bill_cycle_day)
    if kind is spec.kind:
        return spec
    return AccountSpec(
        kind=kind, credit_limit=spec.credit_limit, bill_cycle_day=spec.bill_cycle_day
    )


def _checked_account_kind(
    kind: AccountKind | str, credit_limit: int, bill_cycle_day: int
) -> AccountKind:
    """The account's kind, after checking the kind, credit limit and bill cycle day."""
    try:
        account_kind = AccountKind(kind)
    except ValueError:
        raise ValidationError(
            _("Unknown account kind {kind}"), code="account_kind", kind=str(kind)
        ) from None
    if not isinstance(credit_limit, int) or isinstance(credit_limit, bool) or credit_limit < 0:
        raise ValidationError(
            _("A credit limit is a whole, non-negative number of fen"), code="credit_limit"
        )
    if account_kind is AccountKind.prepaid and credit_limit != 0:
        raise ValidationError(_("A prepaid account has no credit limit"), code="credit_limit")
    if (
        not isinstance(bill_cycle_day, int)
        or isinstance(bill_cycle_day, bool)
        or not 1 <= bill_cycle_day <= 28
    ):
        raise ValidationError(_("The bill cycle day is between 1 and 28"), code="bill_cycle_day")
    return account_kind


def open_billing_account(
    uow: UnitOfWork,
    customer_id: str,
    kind: AccountKind | str,
    *,
    credit_limit: int = 0,
    bill_cycle_day: int = 1,
) -> BillingAccountView:
    """Open a prepaid (预付费) or postpaid (后付费) account for an active customer."""
    uow.actor.require(WRITE)
    spec = _check_account(kind, credit_limit, bill_cycle_day)
    customer = _customer_row(uow, customer_id, lock=True)
    if customer.status != CustomerStatus.active:
        raise Conflict(_("The customer is closed: no new accounts"), code="customer_closed")
    uow.flush()
    (number,) = _reserve_numbers(uow.connection, ACCOUNT_PREFIX, 1)
    values = _account_values(customer.id, customer.org_path, spec, number, utcnow())
    uow.connection.execute(account_table.insert(), [values])
    account = uow.session.get_one(BillingAccount, values["id"])
    uow.audit(
        "billing_account.opened",
        "customer",
        customer.id,
        {
            "account_id": account.id,
            "number": number,
            "kind": account.kind,
            "credit_limit": account.credit_limit,
            "bill_cycle_day": account.bill_cycle_day,
        },
    )
    return _account_view(account)


def _account_row(uow: UnitOfWork, account_id: str, *, lock: bool = False) -> BillingAccount:
    query = select(BillingAccount).where(
        BillingAccount.id == account_id, uow.actor.scope(BillingAccount.org_path)
    )
    if lock:
        query = query.with_for_update()
    account = uow.session.scalars(query).first()
    if account is None:
        raise NotFound(_("No such billing account"), code="account_not_found")
    return account


def get_billing_account(uow: UnitOfWork, account_id: str) -> BillingAccountView:
    uow.actor.require(READ)
    return _account_view(_account_row(uow, account_id))


def list_billing_accounts(uow: UnitOfWork, customer_id: str) -> list[BillingAccountView]:
    uow.actor.require(READ)
    customer = _customer_row(uow, customer_id)
    accounts = uow.session.scalars(
        select(BillingAccount)
        .where(BillingAccount.customer_id == customer.id)
        .order_by(BillingAccount.created_at, BillingAccount.number)
    )
    return [_account_view(a) for a in accounts]


def close_billing_account(uow: UnitOfWork, account_id: str) -> BillingAccountView:
    """Close an active account. Settling its balance (refund, write-off) belongs to the
    销户 order that calls this, through billing and payments."""
    uow.actor.require(WRITE)
    account = _account_row(uow, account_id, lock=True)
    if AccountStatus.closed not in _ACCOUNT_TRANSITIONS[AccountStatus(account.status)]:
        raise Conflict(_("The billing account is already closed"), code="account_closed")
    account.status = AccountStatus.closed
    account.closed_at = utcnow()
    uow.flush()
    uow.audit(
        "billing_account.closed",
        "customer",
        account.customer_id,
        {"account_id": account.id, "number": account.number},
    )
    return _account_view(account)


# =====================================================================================
# Service numbers and service passwords
# =====================================================================================


def _credential(conn: Connection, number: str) -> Row[Any] | None:
    table = credential_table
    return conn.execute(select(table).where(table.c.service_number == number)).first()


def _owned_customer(uow: UnitOfWork, customer_id: str, org_path: str) -> Customer:
    customer = _customer_row(uow, customer_id, lock=True)
    if customer.org_path != org_path:
        raise ValidationError(
            _("The organisation path does not match the customer's"), code="org_path_mismatch"
        )
    if customer.status != CustomerStatus.active:
        raise Conflict(_("The customer is closed"), code="customer_closed")
    return customer


def _link(uow: UnitOfWork, number: str, customer: Customer) -> ServiceCredential:
    credential = uow.session.scalars(
        select(ServiceCredential)
        .where(ServiceCredential.service_number == number)
        .with_for_update()
    ).first()
    if credential is not None:
        if credential.customer_id != customer.id:
            raise Conflict(
                _("This service number already belongs to a customer"),
                code="service_number_taken",
            )
        return credential
    values = _credential_values(customer.id, customer.org_path, number, None, utcnow())
    uow.connection.execute(credential_table.insert(), [values])
    credential = uow.session.get_one(ServiceCredential, values["id"])
    uow.audit(
        "service_number.linked", "customer", customer.id, {"service_number": mask_phone(number)}
    )
    return credential


def link_service_number(
    uow: UnitOfWork, service_number: str, customer_id: str, org_path: str
) -> None:
    """Record that ``service_number`` belongs to the customer (inventory, on activation),
    so the owner can log in with a one-time code before any password is set."""
    uow.actor.require(WRITE)
    number = normalize_service_number(service_number)
    customer = _owned_customer(uow, customer_id, org_path)
    _link(uow, number, customer)


def set_service_password(
    uow: UnitOfWork, service_number: str, customer_id: str, org_path: str, password: str
) -> None:
    """Set (or reset, by staff) the service password of a customer's service number.

    Weak passwords are refused. Setting a password ends the number's customer sessions
    and clears its failed logins and lockout: a reset is how staff unlock a customer.
    """
    uow.actor.require(WRITE)
    number = normalize_service_number(service_number)
    customer = _owned_customer(uow, customer_id, org_path)
    _check_password_for(uow, customer, number, password)
    credential = _link(uow, number, customer)
    _store_password(uow, credential, password)
    _end_sessions(uow.connection, number, except_session=None)
    _clear_failures(uow.connection, number)
    uow.audit(
        "service_password.set", "customer", customer.id, {"service_number": mask_phone(number)}
    )


def change_service_password(
    uow: UnitOfWork,
    token: str,
    old_password: str,
    new_password: str,
    *,
    terminal_id: str | None = None,
) -> None:
    """The customer changes their own password (PROTOCOL.md 3005): the old one must be
    right (a wrong one counts as a failed login); other sessions of the number end."""
    auth = check_token(uow, token)
    customer = uow.session.get(Customer, auth.customer_id)
    assert customer is not None
    _check_password_for(uow, customer, auth.service_number, new_password)
    if new_password == old_password:
        raise ValidationError(
            _("The new service password must differ from the old one"), code="password_same"
        )
    credential = _verify_factor(
        uow, auth.service_number, AuthFactor.password, _Proof(secret=old_password), terminal_id
    )
    row = uow.session.get(ServiceCredential, credential.id)
    assert row is not None
    _store_password(uow, row, new_password)
    _end_sessions(uow.connection, auth.service_number, except_session=auth.session_id)
    uow.audit(
        "service_password.changed",
        "customer",
        auth.customer_id,
        {"service_number": mask_phone(auth.service_number)},
    )


def unlink_service_number(uow: UnitOfWork, service_number: str) -> None:
    """Forget a service number and its password (line terminated, number changed): the
    next owner of a recycled number must never inherit this one's password or sessions."""
    uow.actor.require(WRITE)
    number = normalize_service_number(service_number)
    credential = uow.session.scalars(
        select(ServiceCredential)
        .where(
            ServiceCredential.service_number == number,
            uow.actor.scope(ServiceCredential.org_path),
        )
        .with_for_update()
    ).first()
    if credential is None:
        raise NotFound(_("No such service number"), code="service_number_not_found")
    customer_id = credential.customer_id
    uow.session.delete(credential)
    uow.flush()
    _end_sessions(uow.connection, number, except_session=None)
    uow.audit(
        "service_number.unlinked", "customer", customer_id, {"service_number": mask_phone(number)}
    )


def hash_service_password(password: str) -> str:
    """The stored form of ``password`` (for the seed: hash once, reuse for many rows)."""
    passwords.check_format(password)
    return passwords.hash_password(password)


def _check_password_for(uow: UnitOfWork, customer: Customer, number: str, password: str) -> None:
    birth_dates: list[date] = []
    id_numbers: list[str] = []
    if customer.category == CustomerCategory.individual:
        born = uow.session.scalars(
            select(Individual.birth_date).where(Individual.customer_id == customer.id)
        ).first()
        if born is not None:
            birth_dates.append(born)
        # Decrypted only to compare, never shown or returned: not a sensitive *read*.
        for encrypted in uow.session.scalars(
            select(IdentityDocument.number_encrypted).where(
                IdentityDocument.customer_id == customer.id
            )
        ):
            id_numbers.append(crypto.decrypt(encrypted, ID_PURPOSE))
    passwords.check_strength(
        password, service_number=number, birth_dates=birth_dates, id_numbers=id_numbers
    )


def _store_password(uow: UnitOfWork, credential: ServiceCredential, password: str) -> None:
    credential.password_hash = passwords.hash_password(password)
    credential.password_set_at = utcnow()
    uow.flush()


# =====================================================================================
# Customer authentication
# =====================================================================================


@dataclass(frozen=True)
class _Proof:
    """What the customer presented for one factor."""

    secret: str | None = None
    id_number: str | None = None
    id_name: str | None = None
    face_match_score: int | None = None


def login_with_password(
    uow: UnitOfWork, service_number: str, password: str, terminal_id: str | None = None
) -> CustomerToken:
    """Level 1 with the service password. A wrong password and an unknown number fail
    alike (``customer_auth_failed``); repeated failures lock the number for a while."""
    return _login(uow, service_number, AuthFactor.password, _Proof(secret=password), terminal_id)


def login_with_otp(
    uow: UnitOfWork, service_number: str, code: str, terminal_id: str | None = None
) -> CustomerToken:
    """Level 1 with the latest one-time code sent to the number (``send_otp``)."""
    return _login(uow, service_number, AuthFactor.otp, _Proof(secret=code), terminal_id)


def login_with_id_card(
    uow: UnitOfWork,
    service_number: str,
    *,
    id_number: str,
    id_name: str,
    face_match_score: int,
    terminal_id: str | None = None,
) -> CustomerToken:
    """Level 1 with the owner's ID card read by the terminal's certified reader and a
    passing face match. The gateway checks that the reader is the terminal's own."""
    proof = _Proof(id_number=id_number, id_name=id_name, face_match_score=face_match_score)
    return _login(uow, service_number, AuthFactor.id_card, proof, terminal_id)


def add_factor(
    uow: UnitOfWork,
    token: str,
    method: AuthFactor | str,
    *,
    secret: str | None = None,
    id_number: str | None = None,
    id_name: str | None = None,
    face_match_score: int | None = None,
    terminal_id: str | None = None,
) -> CustomerToken:
    """Raise a level-1 session to level 2 with a second factor of another kind."""
    factor = _factor(method)
    auth = check_token(uow, token)
    if factor in auth.factors:
        raise ValidationError(
            _("The second factor must be different from the first"), code="same_factor"
        )
    proof = _Proof(
        secret=secret, id_number=id_number, id_name=id_name, face_match_score=face_match_score
    )
    _verify_factor(uow, auth.service_number, factor, proof, terminal_id)
    factors = (*auth.factors, str(factor))
    level = min(len(factors), 2)
    now = utcnow()
    idle = get_settings().customer_token_idle_seconds
    uow.connection.execute(
        update(session_table)
        .where(session_table.c.id == auth.session_id)
        .values(
            level=level,
            factors=",".join(factors),
            last_used_at=now,
            expires_at=now + timedelta(seconds=idle),
        )
    )
    uow.audit(
        "customer.factor_added",
        "customer",
        auth.customer_id,
        {
            "service_number": mask_phone(auth.service_number),
            "factor": str(factor),
            "level": level,
            "terminal_id": terminal_id,
        },
    )
    return CustomerToken(
        token=token,
        level=level,
        expires_in_s=idle,
        customer_id=auth.customer_id,
        service_number=auth.service_number,
        customer_name=_masked_customer_name(uow, auth.customer_id),
        factors=factors,
    )


def check_token(uow: UnitOfWork, token: str, *, level: int = 1) -> CustomerAuth:
    """The customer session behind ``token``, its idle timer restarted.

    An unknown, ended or idle-expired token raises ``customer_session_expired`` (20010);
    a session below ``level`` raises ``customer_level_required`` (20011).
    """
    settings = get_settings()
    table = session_table
    now = utcnow()
    row = None
    if isinstance(token, str) and 32 <= len(token) <= 128:
        row = uow.connection.execute(
            select(table).where(table.c.token_hash == crypto.hash_token(token))
        ).first()
    if row is None or row.ended_at is not None or as_utc(row.expires_at) <= now:
        raise AuthenticationFailed(
            _("Your session has expired or ended; please log in again"),
            code="customer_session_expired",
        )
    expires_at = now + timedelta(seconds=settings.customer_token_idle_seconds)
    uow.connection.execute(
        update(table).where(table.c.id == row.id).values(last_used_at=now, expires_at=expires_at)
    )
    if row.level < level:
        raise PermissionDenied(
            _("This needs a second authentication factor"), code="customer_level_required"
        )
    return CustomerAuth(
        session_id=row.id,
        customer_id=row.customer_id,
        service_number=row.service_number,
        org_path=row.org_path,
        level=row.level,
        factors=tuple(f for f in row.factors.split(",") if f),
        expires_at=expires_at,
    )


def logout(uow: UnitOfWork, token: str) -> None:
    """End a customer session (PROTOCOL.md 1003). Ending an unknown or ended session is
    not an error: a kiosk retrying its logout must not be told anything."""
    if not isinstance(token, str) or not token:
        return
    table = session_table
    row = uow.connection.execute(
        select(table.c.id, table.c.customer_id, table.c.service_number, table.c.ended_at).where(
            table.c.token_hash == crypto.hash_token(token)
        )
    ).first()
    if row is None or row.ended_at is not None:
        return
    uow.connection.execute(update(table).where(table.c.id == row.id).values(ended_at=utcnow()))
    uow.audit(
        "customer.logout",
        "customer",
        row.customer_id,
        {"service_number": mask_phone(row.service_number)},
    )


def send_otp(uow: UnitOfWork, service_number: str, terminal_id: str | None = None) -> OtpSent:
    """Send a one-time code by SMS (PROTOCOL.md 1002).

    One code per number per ``otp_resend_seconds``; at most ``otp_daily_cap_per_number``
    a business day per number and ``otp_daily_cap_per_terminal`` per terminal. The answer
    — and every limit — is the same for a number that belongs to nobody (no SMS goes out
    then), so OTP_SEND cannot tell which numbers exist.
    """
    _require_writable(uow)
    settings = get_settings()
    number = normalize_service_number(service_number)
    terminal = _terminal(terminal_id)
    conn = uow.connection
    now = utcnow()
    state = _lock_auth_state(conn, number)
    _refuse_if_locked(state, now)
    _check_otp_limits(conn, settings, number, terminal, now)
    credential = _credential(conn, number)
    recipient = _otp_recipient(conn, number, credential)
    otp_id = new_id()
    code = _new_code() if recipient is not None else None
    conn.execute(
        otp_table.insert(),
        [
            {
                "id": otp_id,
                "service_number": number,
                "customer_id": credential.customer_id if credential is not None else None,
                "terminal_id": terminal,
                "code_hash": _code_hash(otp_id, code) if code is not None else "",
                "created_at": now,
                "expires_at": now + timedelta(seconds=settings.otp_valid_seconds),
                "tries": 0,
                "used_at": None,
            }
        ],
    )
    if code is not None and recipient is not None and credential is not None:
        _queue_otp_sms(uow, recipient, code, credential.customer_id, credential.org_path)
    subject_type, subject_id = _auth_subject(number, credential)
    uow.audit(
        "customer.otp_sent",
        subject_type,
        subject_id,
        {
            "service_number": mask_phone(number),
            "terminal_id": terminal,
            "delivered": code is not None,
        },
    )
    return OtpSent(expires_in_s=settings.otp_valid_seconds)


def _otp_recipient(conn: Connection, number: str, credential: Row[Any] | None) -> str | None:
    """Where the code goes: the service number itself when it is a mobile, else (a fixed
    line, a broadband account) the owner's preferred contact mobile; ``None`` when the
    number has no owner or the owner no mobile — answered like any other send."""
    if credential is None:
        return None
    mobile = _mobile_or_none(number)
    if mobile is not None:
        return mobile
    c = contact_table.c
    return conn.execute(
        select(c.value)
        .where(c.customer_id == credential.customer_id, c.kind == ContactKind.mobile)
        .order_by(c.preferred.desc(), c.created_at)
        .limit(1)
    ).scalar()


def _queue_otp_sms(
    uow: UnitOfWork, recipient: str, code: str, customer_id: str, org_path: str
) -> None:
    notify.queue_sms(
        uow,
        to=recipient,
        template="otp",
        params={"code": code},
        locale=uow.locale,
        customer_id=customer_id,
        org_path=org_path,
    )


def _new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def _code_hash(otp_id: str, code: str) -> str:
    # Keyed and bound to its row: a million possible codes must not be reversible from a
    # database copy, and a hash cannot be moved to another row.
    return crypto.blind_index(f"{otp_id}:{code}", "otp")


def _check_otp_limits(
    conn: Connection, settings: Settings, number: str, terminal: str | None, now: datetime
) -> None:
    table = otp_table
    c = table.c
    last = conn.execute(select(func.max(c.created_at)).where(c.service_number == number)).scalar()
    if last is not None:
        ready = as_utc(last) + timedelta(seconds=settings.otp_resend_seconds)
        if now < ready:
            raise _rate_limited(ready - now)
    day_start, next_day = _business_day_bounds(now, settings.timezone)
    sent_today = conn.execute(
        select(func.count()).where(c.service_number == number, c.created_at >= day_start)
    ).scalar_one()
    if sent_today >= settings.otp_daily_cap_per_number:
        raise _rate_limited(next_day - now)
    if terminal is not None:
        terminal_today = conn.execute(
            select(func.count()).where(c.terminal_id == terminal, c.created_at >= day_start)
        ).scalar_one()
        if terminal_today >= settings.otp_daily_cap_per_terminal:
            raise _rate_limited(next_day - now)


def _business_day_bounds(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """Start of today and of tomorrow in the operator's time zone, as UTC instants."""
    zone = ZoneInfo(tz)
    today = business_date(now, tz)
    start = datetime(today.year, today.month, today.day, tzinfo=zone)
    tomorrow = today + timedelta(days=1)
    end = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    return as_utc(start), as_utc(end)


def _rate_limited(wait: timedelta) -> RateLimited:
    return RateLimited(
        _("Too many requests; try again in {retry_after_s} seconds"),
        code="customer_rate_limited",
        retry_after_s=max(1, math.ceil(wait.total_seconds())),
    )


# -- the shared login path ------------------------------------------------------------


def _factor(method: AuthFactor | str) -> AuthFactor:
    try:
        return AuthFactor(method)
    except ValueError:
        raise ValidationError(
            _("Unknown authentication method {method}"), code="auth_method", method=str(method)
        ) from None


def _terminal(terminal_id: str | None) -> str | None:
    if terminal_id is None:
        return None
    if not isinstance(terminal_id, str) or not 1 <= len(terminal_id) <= 64:
        raise ValidationError(_("A terminal id has 1 to 64 characters"), code="terminal_id")
    return terminal_id


def _login(
    uow: UnitOfWork, service_number: str, factor: AuthFactor, proof: _Proof, terminal_id: str | None
) -> CustomerToken:
    credential = _verify_factor(uow, service_number, factor, proof, terminal_id)
    return _start_session(uow, credential, factor, _terminal(terminal_id))


def _verify_factor(
    uow: UnitOfWork,
    service_number: str,
    factor: AuthFactor,
    proof: _Proof,
    terminal_id: str | None,
) -> Row[Any]:
    """Check one factor for ``service_number``; the number's credential row on success.

    Order: input shape (422), throttles (429), lockout (423), then the secret — checked
    with the same cost whether or not the number exists — and the failure bookkeeping.
    """
    _require_writable(uow)
    settings = get_settings()
    number = normalize_service_number(service_number)
    terminal = _terminal(terminal_id)
    _check_proof_shape(factor, proof)
    _throttle_attempt(settings, terminal)
    conn = uow.connection
    now = utcnow()
    state = _lock_auth_state(conn, number)
    _refuse_if_locked(state, now)
    credential = _credential(conn, number)
    otp_id: str | None = None
    if factor is AuthFactor.password:
        ok = _password_ok(uow, credential, proof.secret or "")
    elif factor is AuthFactor.otp:
        ok, otp_id = _otp_ok(conn, settings, number, credential, proof.secret or "", now)
    else:
        ok = _id_card_ok(uow, settings, credential, proof)
    if not ok:
        _fail(uow, number, credential, factor, terminal, otp_id, now)
    assert credential is not None
    if state.failures or state.locked_until is not None:
        _clear_failures(conn, number)
    return credential


def _check_proof_shape(factor: AuthFactor, proof: _Proof) -> None:
    if factor is AuthFactor.id_card:
        score = proof.face_match_score
        if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
            raise ValidationError(
                _("A face match score is a whole number from 0 to 100"), code="face_match_score"
            )
        if not proof.id_number or not proof.id_name:
            raise ValidationError(
                _("An ID card login needs the card's number and name"), code="id_card_missing"
            )
    elif not isinstance(proof.secret, str) or not 1 <= len(proof.secret) <= 64:
        raise ValidationError(_("The secret is missing"), code="secret_missing")


def _throttle_attempt(settings: Settings, terminal: str | None) -> None:
    throttle = get_throttle()
    global_rate = Rate(settings.customer_auth_global_per_minute, 60)
    if not throttle.test(_GLOBAL_FAILURES_KEY, global_rate):
        raise _rate_limited(
            timedelta(seconds=throttle.retry_after(_GLOBAL_FAILURES_KEY, global_rate))
        )
    if terminal is not None:
        rate = Rate(settings.customer_auth_per_terminal_per_minute, 60)
        key = f"customers:auth:terminal:{terminal}"
        if not throttle.hit(key, rate):
            raise _rate_limited(timedelta(seconds=throttle.retry_after(key, rate)))


# Failed customer logins across the whole operator (a password sprayed over many numbers).
_GLOBAL_FAILURES_KEY = "customers:auth:global-failures"


def _password_ok(uow: UnitOfWork, credential: Row[Any] | None, password: str) -> bool:
    if credential is None or credential.password_hash is None:
        passwords.burn_verification(password)
        return False
    if not passwords.verify_password(credential.password_hash, password):
        return False
    if passwords.needs_rehash(credential.password_hash):
        # Parameters changed since this hash was made: upgrade it while we know the password.
        table = credential_table
        uow.connection.execute(
            update(table)
            .where(table.c.id == credential.id)
            .values(password_hash=passwords.hash_password(password))
        )
    return True


def _otp_ok(
    conn: Connection,
    settings: Settings,
    number: str,
    credential: Row[Any] | None,
    code: str,
    now: datetime,
) -> tuple[bool, str | None]:
    """Only the latest code sent to the number counts; it must be unused, unexpired, with
    tries left, sent for the number's current owner, and equal."""
    table = otp_table
    c = table.c
    otp = conn.execute(
        select(table)
        .where(c.service_number == number)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(1)
    ).first()
    if otp is None:
        return False, None
    usable = (
        credential is not None
        and otp.customer_id == credential.customer_id
        and otp.code_hash != ""
        and otp.used_at is None
        and now < as_utc(otp.expires_at)
        and otp.tries < settings.otp_max_tries
    )
    if not usable or not crypto.constant_time_equal(otp.code_hash, _code_hash(otp.id, code)):
        return False, str(otp.id)
    conn.execute(update(table).where(c.id == otp.id).values(used_at=now))
    return True, str(otp.id)


def _id_card_ok(
    uow: UnitOfWork, settings: Settings, credential: Row[Any] | None, proof: _Proof
) -> bool:
    pass_mark = int(
        getattr(settings, "customer_face_match_pass_mark", DEFAULT_FACE_MATCH_PASS_MARK)
    )
    if credential is None or (proof.face_match_score or 0) < pass_mark:
        return False
    index = _id_index(canonical_document_number(proof.id_number or ""))
    holder = uow.connection.execute(
        select(Customer.name)
        .join(IdentityDocument, IdentityDocument.customer_id == Customer.id)
        .where(Customer.id == credential.customer_id, IdentityDocument.number_index == index)
    ).first()
    return holder is not None and " ".join(holder.name.split()) == " ".join(
        (proof.id_name or "").split()
    )


@dataclass(frozen=True)
class _AuthStateRow:
    failures: int
    last_failure_at: datetime | None
    locked_until: datetime | None


def _lock_auth_state(conn: Connection, number: str) -> _AuthStateRow:
    """The number's failure state, created if absent and locked for this transaction (it
    also serialises one number's logins and code sends on PostgreSQL)."""
    table = auth_state_table
    c = table.c
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(table).values(service_number=number, failures=0).on_conflict_do_nothing())
    row = conn.execute(select(table).where(c.service_number == number).with_for_update()).one()
    return _AuthStateRow(
        failures=int(row.failures),
        last_failure_at=as_utc(row.last_failure_at) if row.last_failure_at else None,
        locked_until=as_utc(row.locked_until) if row.locked_until else None,
    )


def _refuse_if_locked(state: _AuthStateRow, now: datetime) -> None:
    if state.locked_until is not None and now < state.locked_until:
        raise _locked(state.locked_until - now)


def _locked(wait: timedelta) -> Locked:
    return Locked(
        _("Too many failed attempts; try again in {retry_after_s} seconds"),
        code="customer_locked",
        retry_after_s=max(1, math.ceil(wait.total_seconds())),
    )


def _clear_failures(conn: Connection, number: str) -> None:
    table = auth_state_table
    conn.execute(
        update(table)
        .where(table.c.service_number == number)
        .values(failures=0, last_failure_at=None, locked_until=None)
    )


def _auth_subject(number: str, credential: Row[Any] | None) -> tuple[str, str]:
    """The audit subject of an authentication event: the customer when the number has
    one, else a keyed digest of the number (never the number itself)."""
    if credential is not None:
        return "customer", str(credential.customer_id)
    return "service_number", crypto.blind_index(number, "service_number")


@dataclass(frozen=True)
class _Attempt:
    """A failed attempt, as recorded (possibly twice: see ``_after_root_transaction``)."""

    id: str
    number: str
    factor: AuthFactor
    terminal: str | None
    otp_id: str | None
    at: datetime


def _record_failure(
    conn: Connection, settings: Settings, attempt: _Attempt
) -> tuple[bool, datetime | None]:
    """Count one failed attempt, once: whether this call recorded it (``False`` when the
    attempt's row already exists) and the ``locked_until`` this failure caused, if any."""
    state = _lock_auth_state(conn, attempt.number)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    recorded = conn.execute(
        insert(auth_failure_table)
        .values(
            id=attempt.id,
            service_number=attempt.number,
            method=str(attempt.factor),
            terminal_id=attempt.terminal,
            at=attempt.at,
        )
        .on_conflict_do_nothing()
        # RETURNING, not rowcount: SQLAlchemy reports -1 for an INSERT on psycopg.
        .returning(auth_failure_table.c.id)
    ).first()
    if recorded is None:
        return False, None
    window = timedelta(minutes=settings.customer_lockout_minutes)
    failures = state.failures
    # Failures older than the lockout window, or from before an expired lock, are forgotten.
    if (
        state.last_failure_at is None
        or attempt.at - state.last_failure_at >= window
        or (state.locked_until is not None and state.locked_until <= attempt.at)
    ):
        failures = 0
    failures += 1
    locked_until = None
    if failures >= settings.customer_login_max_failures:
        locked_until = attempt.at + window
    conn.execute(
        update(auth_state_table)
        .where(auth_state_table.c.service_number == attempt.number)
        .values(
            failures=0 if locked_until else failures,
            last_failure_at=attempt.at,
            locked_until=locked_until,
        )
    )
    if attempt.otp_id is not None:
        conn.execute(
            update(otp_table)
            .where(otp_table.c.id == attempt.otp_id)
            .values(tries=otp_table.c.tries + 1)
        )
    return True, locked_until


def _fail(
    uow: UnitOfWork,
    number: str,
    credential: Row[Any] | None,
    factor: AuthFactor,
    terminal: str | None,
    otp_id: str | None,
    now: datetime,
) -> None:
    """Record a failed attempt (durably, see ``_after_root_transaction``) and raise."""
    settings = get_settings()
    get_throttle().hit(_GLOBAL_FAILURES_KEY, Rate(settings.customer_auth_global_per_minute, 60))
    attempt = _Attempt(new_id(), number, factor, terminal, otp_id, now)
    subject_type, subject_id = _auth_subject(number, credential)
    detail = {"service_number": mask_phone(number), "method": str(factor), "terminal_id": terminal}

    def records(locked_until: datetime | None) -> list[tuple[str, dict[str, Any]]]:
        result = [("customer.login_failed", detail)]
        if locked_until is not None:
            result.append(("customer.locked", {**detail, "locked_until": locked_until.isoformat()}))
        return result

    _recorded, locked_until = _record_failure(uow.connection, settings, attempt)
    # Inside a savepoint the audit records are written by ``replay`` once the root
    # transaction has ended, whatever became of the savepoint: a savepoint rolled back
    # by the caller (the gateway's, around a request that raised) would otherwise take
    # queued records with it, or keep them while the attempt is written again.
    nested = uow.session.in_nested_transaction()
    if not nested:
        for action, data in records(locked_until):
            uow.audit(action, subject_type, subject_id, data)

    def replay(conn: Connection, _committed: bool) -> None:
        recorded, again = _record_failure(conn, settings, attempt)
        # Not nested: replay runs only when the root did not commit, so ``recorded``.
        if recorded or nested:
            audit.write(
                conn,
                [
                    audit.PendingRecord.of(uow.actor, action, subject_type, subject_id, data)
                    for action, data in records(again if recorded else locked_until)
                ],
            )

    _after_root_transaction(uow, replay)
    log.info(
        "customer login failed",
        service_number=mask_phone(number),
        method=str(factor),
        terminal_id=terminal,
        locked=locked_until is not None,
    )
    if locked_until is not None:
        raise _locked(locked_until - now)
    raise AuthenticationFailed(
        _("Authentication failed: check the service number and the password or code"),
        code="customer_auth_failed",
    )


def _after_root_transaction(uow: UnitOfWork, replay: Callable[[Connection, bool], None]) -> None:
    """Make sure a write done now survives however the caller ends its transaction.

    The write was just made in the unit of work. If the unit of work's (root) transaction
    ends without committing — the usual fate of a unit of work whose service raised —
    or if the write was made inside a savepoint (the gateway's savepoint per request) that
    may have been rolled back while the root committed, ``replay(conn, committed)`` runs
    in a short transaction of its own once the root transaction has really ended: its
    locks are released, so on SQLite the new writer does not wait for it. ``replay`` must
    be idempotent (``_record_failure`` is, by the attempt's id).
    """
    session: Session = uow.session
    root = session.get_transaction()
    in_savepoint = session.in_nested_transaction()
    state = {"committed": False, "done": False}

    def on_commit(ending: Session) -> None:
        if not ending.in_nested_transaction():  # a released savepoint is no commit
            state["committed"] = True

    def on_end(_session: Session, transaction: SessionTransaction) -> None:
        if state["done"] or transaction is not root:
            return
        state["done"] = True
        if state["committed"] and not in_savepoint:
            return
        try:
            with uow.engine.begin() as conn:
                replay(conn, state["committed"])
        except Exception:  # the caller already has its error; ours is only logged
            log.exception("could not record a failed customer login")

    event.listen(session, "after_commit", on_commit)
    event.listen(session, "after_transaction_end", on_end)


def _start_session(
    uow: UnitOfWork, credential: Row[Any], factor: AuthFactor, terminal: str | None
) -> CustomerToken:
    settings = get_settings()
    now = utcnow()
    token = secrets.token_hex(_TOKEN_BYTES)
    idle = settings.customer_token_idle_seconds
    uow.connection.execute(
        session_table.insert(),
        [
            {
                "id": new_id(),
                "token_hash": crypto.hash_token(token),
                "service_number": credential.service_number,
                "customer_id": credential.customer_id,
                "org_path": credential.org_path,
                "level": 1,
                "factors": str(factor),
                "terminal_id": terminal,
                "created_at": now,
                "last_used_at": now,
                "expires_at": now + timedelta(seconds=idle),
                "ended_at": None,
            }
        ],
    )
    uow.audit(
        "customer.login",
        "customer",
        credential.customer_id,
        {
            "service_number": mask_phone(credential.service_number),
            "method": str(factor),
            "level": 1,
            "terminal_id": terminal,
        },
    )
    return CustomerToken(
        token=token,
        level=1,
        expires_in_s=idle,
        customer_id=credential.customer_id,
        service_number=credential.service_number,
        customer_name=_masked_customer_name(uow, credential.customer_id),
        factors=(str(factor),),
    )


def _masked_customer_name(uow: UnitOfWork, customer_id: str) -> str:
    row = uow.connection.execute(
        select(Customer.name, Customer.category).where(Customer.id == customer_id)
    ).one()
    return mask_name(row.name) if row.category == CustomerCategory.individual else row.name


def _end_sessions(conn: Connection, number: str, *, except_session: str | None) -> None:
    table = session_table
    c = table.c
    query = update(table).where(c.service_number == number, c.ended_at.is_(None))
    if except_session is not None:
        query = query.where(c.id != except_session)
    conn.execute(query.values(ended_at=utcnow()))


def purge_expired(uow: UnitOfWork, *, older_than_days: int = 7) -> int:
    """Delete authentication rows that can no longer matter (for a worker timer):
    sessions and one-time codes past their expiry, failed attempts and idle failure
    states, all older than ``older_than_days`` (at least 2: the daily caps look at the
    current business day). Returns the number of rows deleted."""
    uow.actor.require(WRITE)
    cutoff = utcnow() - timedelta(days=max(older_than_days, 2))
    conn = uow.connection
    sessions, codes = session_table.c, otp_table.c
    failures, states = auth_failure_table.c, auth_state_table.c
    removed = conn.execute(delete(session_table).where(sessions.expires_at < cutoff)).rowcount
    removed += conn.execute(delete(otp_table).where(codes.expires_at < cutoff)).rowcount
    removed += conn.execute(delete(auth_failure_table).where(failures.at < cutoff)).rowcount
    removed += conn.execute(
        delete(auth_state_table).where(
            or_(states.last_failure_at.is_(None), states.last_failure_at < cutoff),
            or_(states.locked_until.is_(None), states.locked_until < cutoff),
        )
    ).rowcount
    return int(removed)


# =====================================================================================
# Attribute-filtered lists (TMF APIs) and the few changes they expose
# =====================================================================================
#
# Every list filters in SQL (``core.query``) inside the actor's subtree, counts with one
# COUNT over the same filtered select, orders by primary key (ids grow with time, so the
# order is stable and served by the primary-key index) and loads what a page shows in a
# fixed number of queries, whatever its length.

# A filter that is more than a column comparison: one value → a WHERE clause. These take
# ``eq`` only (several values: any of them).
_Matcher = Callable[[str], ColumnElement[bool]]


def _filter_clauses(
    conditions: Sequence[Condition],
    fields: Mapping[str, FilterField],
    matchers: Mapping[str, _Matcher],
) -> list[ColumnElement[bool]]:
    plain: list[Condition] = []
    clauses: list[ColumnElement[bool]] = []
    for condition in conditions:
        match = matchers.get(condition.field)
        if match is None:
            plain.append(condition)
            continue
        if condition.op is not Op.eq:
            raise ValidationError(
                _("The operator {op} cannot be used on {field}"),
                code="unsupported_filter",
                op=condition.op.value,
                field=condition.field,
            )
        try:
            terms = [match(value) for value in condition.values]
        except ValidationError:
            # The value is never echoed: it may be an ID number.
            raise ValidationError(
                _("Invalid value for the filter {field}"),
                code="invalid_filter",
                field=condition.field,
            ) from None
        if terms:
            clauses.append(or_(*terms))
    return clauses + where_clauses(plain, fields)


def _name_prefix(value: str) -> ColumnElement[bool]:
    prefix = " ".join(value.split())
    if not prefix:
        raise ValidationError(_("The name is missing"), code="name_missing")
    # The name index (text_pattern_ops on PostgreSQL) serves LIKE 'prefix%'.
    return Customer.name.startswith(prefix, autoescape=True)


def _id_number_match(value: str) -> ColumnElement[bool]:
    """Customers holding the document: an exact lookup through the blind index."""
    index = _id_index(canonical_document_number(value))
    return Customer.id.in_(
        select(IdentityDocument.customer_id).where(IdentityDocument.number_index == index)
    )


def _service_number_match(value: str) -> ColumnElement[bool]:
    """Customers owning the service number, or with it as their contact mobile (the same
    rule as ``search_customers``)."""
    number = normalize_service_number(value)
    owns_line = Customer.id.in_(
        select(ServiceCredential.customer_id).where(ServiceCredential.service_number == number)
    )
    mobile = _mobile_or_none(number)
    if mobile is None:
        return owns_line
    has_mobile = Customer.id.in_(
        select(ContactMedium.customer_id).where(
            ContactMedium.kind == ContactKind.mobile, ContactMedium.value == mobile
        )
    )
    return or_(owns_line, has_mobile)


def _party_match(value: str) -> ColumnElement[bool]:
    return or_(
        Customer.id.in_(select(Individual.customer_id).where(Individual.id == value)),
        Customer.id.in_(select(Organization.customer_id).where(Organization.id == value)),
    )


def _account_match(value: str) -> ColumnElement[bool]:
    return Customer.id.in_(select(BillingAccount.customer_id).where(BillingAccount.id == value))


CUSTOMER_FILTERS: Mapping[str, FilterField] = {
    "status": FilterField(Customer.status),
    "category": FilterField(Customer.category),
    "number": FilterField(Customer.number),
    "created_at": FilterField(Customer.created_at, parse_datetime, ordered=True),
}
_CUSTOMER_MATCHERS: Mapping[str, _Matcher] = {
    "name": _name_prefix,
    "party_id": _party_match,
    "account_id": _account_match,
    "service_number": _service_number_match,
    "id_number": _id_number_match,
}


def list_customers(uow: UnitOfWork, query: ListQuery) -> tuple[list[CustomerRecord], int]:
    """One page of the customers in the actor's subtree matching ``query`` and their total.

    Fields: ``status``, ``category``, ``number`` (exact), ``created_at`` (ordered),
    ``name`` (prefix), ``party_id``, ``account_id``, ``service_number`` (a line or a
    contact mobile) and ``id_number`` (exact, through the blind index)."""
    uow.actor.require(READ)
    clauses = _filter_clauses(query.conditions, CUSTOMER_FILTERS, _CUSTOMER_MATCHERS)
    base = select(Customer).where(uow.actor.scope(Customer.org_path), *clauses)
    rows, total = fetch_page(uow.session, base, query, order_by=[Customer.id])
    return _customer_records(uow, rows), total


def get_customer_record(uow: UnitOfWork, customer_id: str) -> CustomerRecord:
    """One customer as ``list_customers`` shows it."""
    uow.actor.require(READ)
    connection = _read_connection(uow)
    customer = connection.execute(_CUSTOMER_BY_ID, {"customer_id": customer_id}).first()
    # Outside the subtree reads exactly like missing (as ``_customer_row``); checked here
    # rather than in SQL so that the statement above is built once.
    if customer is None or not uow.actor.sees(customer.org_path):
        raise NotFound(_("No such customer"), code="customer_not_found")
    (record,) = _customer_records(uow, [customer])
    return record


# The reads of every TMF customer request (``get_customer_record`` / ``list_customers``),
# built once and run as Core statements on the transaction's connection: building a
# select and hashing its cache key on every call, then loading ORM objects into the
# identity map, cost more CPU than running them (BENCHMARKS.md, "TMF API over HTTP").
# They select the columns the views show; ids are an expanding parameter.
_CUSTOMER_BY_ID = select(
    Customer.id,
    Customer.number,
    Customer.category,
    Customer.status,
    Customer.name,
    Customer.org_unit_id,
    Customer.org_path,
    Customer.created_at,
).where(Customer.id == bindparam("customer_id"))
_PARTY_IDS = {
    category: select(model.customer_id, model.id).where(
        model.customer_id.in_(bindparam("ids", expanding=True))
    )
    for category, model in (
        (CustomerCategory.individual, Individual),
        (CustomerCategory.organisation, Organization),
    )
}
_CONTACTS_OF = (
    select(
        ContactMedium.customer_id,
        ContactMedium.id,
        ContactMedium.kind,
        ContactMedium.value,
        ContactMedium.preferred,
    )
    .where(ContactMedium.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(ContactMedium.created_at, ContactMedium.id)
)
_ACCOUNTS_OF = (
    select(
        BillingAccount.id,
        BillingAccount.number,
        BillingAccount.customer_id,
        BillingAccount.kind,
        BillingAccount.status,
        BillingAccount.credit_limit,
        BillingAccount.bill_cycle_day,
        BillingAccount.org_path,
        BillingAccount.created_at,
        BillingAccount.closed_at,
    )
    .where(BillingAccount.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(BillingAccount.created_at, BillingAccount.number)
)


def _read_connection(uow: UnitOfWork) -> Connection:
    """The transaction's connection for Core reads. The session flushes first, as its
    autoflush would before an ORM query: a write handler reads back what it just changed
    (a no-op on a read-only unit of work)."""
    uow.session.flush()
    return uow.connection


def _customer_records(
    uow: UnitOfWork, customers: Sequence[Customer] | Sequence[AnyRow]
) -> list[CustomerRecord]:
    ids = [c.id for c in customers]
    if not ids:
        return []
    connection = _read_connection(uow)
    parties: dict[str, str] = {}
    # One query per category present on the page (a page of persons reads no
    # organisations).
    for category in sorted({c.category for c in customers}):
        _party_model(category)  # an unknown category is refused, as it always was
        rows = connection.execute(_PARTY_IDS[CustomerCategory(category)], {"ids": ids})
        parties.update({row.customer_id: row.id for row in rows})
    contacts = _contacts_of(uow, ids)
    accounts: dict[str, list[BillingAccountView]] = {}
    for account in connection.execute(_ACCOUNTS_OF, {"ids": ids}):
        accounts.setdefault(account.customer_id, []).append(_account_view(account))
    return [
        CustomerRecord(
            id=customer.id,
            number=customer.number,
            category=customer.category,
            status=customer.status,
            name=_display_name(customer),
            org_unit_id=customer.org_unit_id,
            org_path=customer.org_path,
            created_at=customer.created_at,
            party_id=parties[customer.id],
            contacts=tuple(contacts.get(customer.id, ())),
            accounts=tuple(accounts.get(customer.id, ())),
        )
        for customer in customers
    ]


def _contacts_of(
    uow: UnitOfWork, customer_ids: Sequence[str]
) -> dict[str, list[ContactMediumView]]:
    contacts: dict[str, list[ContactMediumView]] = {}
    rows = _read_connection(uow).execute(_CONTACTS_OF, {"ids": list(customer_ids)})
    for contact in rows:
        contacts.setdefault(contact.customer_id, []).append(_contact_view(contact))
    return contacts


# -- parties ---------------------------------------------------------------------------


def _party_model(category: CustomerCategory | str) -> type[Individual] | type[Organization]:
    try:
        kind = CustomerCategory(category)
    except ValueError:
        raise ValidationError(
            _("Unknown customer category {category}"), code="category", category=str(category)
        ) from None
    return Individual if kind is CustomerCategory.individual else Organization


_PARTY_MATCHERS: Mapping[str, _Matcher] = {"name": _name_prefix, "id_number": _id_number_match}


def _party_filters(model: type[Individual] | type[Organization]) -> dict[str, FilterField]:
    fields = {
        "customer_id": FilterField(Customer.id),
        "created_at": FilterField(Customer.created_at, parse_datetime, ordered=True),
    }
    if model is Individual:
        fields["gender"] = FilterField(Individual.gender)
    else:
        fields["credit_code"] = FilterField(Organization.credit_code, _credit_code_filter)
    return fields


def _credit_code_filter(value: str) -> str:
    return value.strip().upper()


def list_parties(
    uow: UnitOfWork, category: CustomerCategory | str, query: ListQuery
) -> tuple[list[PartyView], int]:
    """One page of the individuals (or organisations) in the actor's subtree and their
    total. Fields: ``customer_id``, ``created_at`` (ordered), ``name`` (prefix),
    ``id_number`` (individuals, blind index), ``gender`` (individuals), ``credit_code``
    (organisations, exact)."""
    uow.actor.require(READ)
    model = _party_model(category)
    matchers = _PARTY_MATCHERS if model is Individual else {"name": _name_prefix}
    clauses = _filter_clauses(query.conditions, _party_filters(model), matchers)
    base = (
        select(model)
        .join(Customer, Customer.id == model.customer_id)
        .where(uow.actor.scope(Customer.org_path), *clauses)
    )
    rows, total = fetch_page(uow.session, base, query, order_by=[model.id])
    return _party_views(uow, rows), total


def get_party(uow: UnitOfWork, category: CustomerCategory | str, party_id: str) -> PartyView:
    """One individual (or organisation) inside the actor's subtree (else NotFound)."""
    uow.actor.require(READ)
    model = _party_model(category)
    party = cast(
        Individual | Organization | None,
        uow.session.scalars(
            select(model)
            .join(Customer, Customer.id == model.customer_id)
            .where(model.id == party_id, uow.actor.scope(Customer.org_path))
        ).first(),
    )
    if party is None:
        raise NotFound(_("No such party"), code="party_not_found")
    (view,) = _party_views(uow, [party])
    return view


def get_customer_party(uow: UnitOfWork, customer_id: str) -> PartyView:
    """The party (individual or organisation) of a customer."""
    uow.actor.require(READ)
    customer = _customer_row(uow, customer_id)
    model = _party_model(customer.category)
    party = cast(
        Individual | Organization,
        uow.session.scalars(select(model).where(model.customer_id == customer.id)).one(),
    )
    (view,) = _party_views(uow, [party])
    return view


def _party_views(uow: UnitOfWork, parties: Sequence[Individual | Organization]) -> list[PartyView]:
    ids = [p.customer_id for p in parties]
    if not ids:
        return []
    contacts = _contacts_of(uow, ids)
    documents: dict[str, list[IdentityDocumentView]] = {}
    for document in uow.session.scalars(
        select(IdentityDocument)
        .where(IdentityDocument.customer_id.in_(ids))
        .order_by(IdentityDocument.created_at, IdentityDocument.id)
    ):
        documents.setdefault(document.customer_id, []).append(
            IdentityDocumentView(
                id=document.id, doc_type=document.doc_type, number_masked=document.number_masked
            )
        )
    views = []
    for party in parties:
        person = isinstance(party, Individual)
        views.append(
            PartyView(
                id=party.id,
                customer_id=party.customer_id,
                category=CustomerCategory.individual if person else CustomerCategory.organisation,
                name=mask_name(party.name) if person else party.name,
                gender=party.gender if isinstance(party, Individual) else None,
                credit_code=party.credit_code if isinstance(party, Organization) else None,
                documents=tuple(documents.get(party.customer_id, ())),
                contacts=tuple(contacts.get(party.customer_id, ())),
                org_path=party.org_path,
                created_at=party.created_at,
            )
        )
    return views


# -- billing accounts ------------------------------------------------------------------

ACCOUNT_FILTERS: Mapping[str, FilterField] = {
    "customer_id": FilterField(BillingAccount.customer_id),
    "status": FilterField(BillingAccount.status),
    "kind": FilterField(BillingAccount.kind),
    "number": FilterField(BillingAccount.number),
    "created_at": FilterField(BillingAccount.created_at, parse_datetime, ordered=True),
}


def list_accounts(uow: UnitOfWork, query: ListQuery) -> tuple[list[AccountRecord], int]:
    """One page of the billing accounts in the actor's subtree and their total. Fields:
    ``customer_id``, ``status``, ``kind``, ``number`` (exact), ``created_at`` (ordered)."""
    uow.actor.require(READ)
    clauses = where_clauses(query.conditions, ACCOUNT_FILTERS)
    base = (
        select(BillingAccount, Customer.name, Customer.category)
        .join(Customer, Customer.id == BillingAccount.customer_id)
        .where(uow.actor.scope(BillingAccount.org_path), *clauses)
    )
    rows, total = fetch_page(uow.session, base, query, order_by=[BillingAccount.id])
    return [_account_record(row[0], row[1], row[2]) for row in rows], total


def get_account_record(uow: UnitOfWork, account_id: str) -> AccountRecord:
    uow.actor.require(READ)
    account = _account_row(uow, account_id)
    owner = uow.session.execute(
        select(Customer.name, Customer.category).where(Customer.id == account.customer_id)
    ).one()
    return _account_record(account, owner.name, owner.category)


def _account_record(account: BillingAccount, owner_name: str, category: str) -> AccountRecord:
    shown = mask_name(owner_name) if category == CustomerCategory.individual else owner_name
    return AccountRecord(**_account_view(account).model_dump(), customer_name=shown)


def change_credit_limit(uow: UnitOfWork, account_id: str, credit_limit: int) -> BillingAccountView:
    """Set the credit limit (fen) of an active postpaid account; audited. A prepaid
    account has none (refused, as when opening one)."""
    uow.actor.require(WRITE)
    account = _account_row(uow, account_id, lock=True)
    _check_account(account.kind, credit_limit, account.bill_cycle_day)
    if account.status != AccountStatus.active:
        raise Conflict(_("The billing account is already closed"), code="account_closed")
    if account.credit_limit == credit_limit:
        return _account_view(account)
    previous = account.credit_limit
    account.credit_limit = credit_limit
    uow.flush()
    uow.audit(
        "billing_account.credit_limit_changed",
        "customer",
        account.customer_id,
        {
            "account_id": account.id,
            "number": account.number,
            "from": previous,
            "to": credit_limit,
        },
    )
    return _account_view(account)


# -- contact media ---------------------------------------------------------------------


def replace_contact_media(
    uow: UnitOfWork,
    customer_id: str,
    *,
    mobile: str | None = None,
    email: str | None = None,
    address: str | None = None,
) -> None:
    """Make the customer's contact media exactly these (``None``: none of that kind),
    validated as at registration; audited with masked values. A value given exactly as
    it is shown (masked) keeps the stored one, so a caller can send back what it read
    with one medium changed. Rows whose value does not change are kept as they are."""
    uow.actor.require(WRITE)
    customer = _customer_row(uow, customer_id, lock=True)
    if customer.status != CustomerStatus.active:
        raise Conflict(_("The customer is closed"), code="customer_closed")
    existing = uow.session.scalars(
        select(ContactMedium)
        .where(ContactMedium.customer_id == customer.id)
        .order_by(ContactMedium.created_at, ContactMedium.id)
    ).all()
    shown = {c.kind: (_contact_view(c).value, c.value) for c in reversed(existing)}
    normalise: dict[str, Callable[[str], str]] = {
        ContactKind.mobile: normalize_mobile,
        ContactKind.email: normalize_email,
        ContactKind.address: normalize_address,
    }
    wanted: dict[str, str | None] = {}
    for kind, value in (
        (ContactKind.mobile, mobile),
        (ContactKind.email, email),
        (ContactKind.address, address),
    ):
        if not value:
            wanted[kind] = None
        elif kind in shown and value == shown[kind][0]:
            wanted[kind] = shown[kind][1]
        else:
            wanted[kind] = normalise[kind](value)
    kept: list[ContactMedium] = []
    changed = False
    for contact in existing:
        if wanted.get(contact.kind) == contact.value and all(k.kind != contact.kind for k in kept):
            kept.append(contact)
            continue
        uow.session.delete(contact)
        changed = True
    now = utcnow()
    for wanted_kind, wanted_value in wanted.items():
        if wanted_value is None or any(k.kind == wanted_kind for k in kept):
            continue
        contact = ContactMedium(
            id=new_id(),
            customer_id=customer.id,
            org_path=customer.org_path,
            kind=str(wanted_kind),
            value=wanted_value,
            preferred=False,
            created_at=now,
        )
        uow.session.add(contact)
        kept.append(contact)
        changed = True
    if not changed:
        return
    if kept and not any(k.preferred for k in kept):
        kept[0].preferred = True  # the first one, as at registration
    customer.updated_at = now
    uow.flush()
    uow.audit(
        "customer.contacts_changed",
        "customer",
        customer.id,
        {
            "mobile": mask_phone(wanted[ContactKind.mobile]),
            "email": mask_email(wanted[ContactKind.email]),
            "address": bool(wanted[ContactKind.address]),
        },
    )


# -- aggregates for reports ------------------------------------------------------------


def count_by_org_path(uow: UnitOfWork) -> dict[str, int]:
    """Active customers the actor may see, counted per owning org unit (its path).

    A report's input: figures only, no personal data, so it needs ``reports.read``
    rather than ``customers.read`` (a manager's dashboard). One grouped query."""
    uow.actor.require("reports.read")
    query = (
        select(Customer.org_path, func.count())
        .where(uow.actor.scope(Customer.org_path), Customer.status == CustomerStatus.active.value)
        .group_by(Customer.org_path)
    )
    return {path: int(count) for path, count in uow.session.execute(query)}


# -- kiosk (TSP/1) helpers: sessions bound to a terminal, the kiosk's reads --------------
#
# PROTOCOL.md, "Sessions and connections": customer tokens belong to the terminal that
# logged the customer in, and a terminal holds at most one. The web channel passes its own
# key as ``terminal_id`` (``web:<ip>``) and is not bound this way; only the gateway calls
# these.


def check_terminal_token(
    uow: UnitOfWork, token: str, terminal_id: str, *, level: int = 1
) -> CustomerAuth:
    """``check_token`` for a token presented by ``terminal_id``: a token issued at any
    other terminal (or channel) is ``customer_session_expired`` (20010), exactly like an
    unknown one, and its idle timer is left alone."""
    table = session_table
    owner = None
    if isinstance(token, str) and 32 <= len(token) <= 128:
        owner = uow.connection.execute(
            select(table.c.terminal_id).where(table.c.token_hash == crypto.hash_token(token))
        ).first()
    if owner is None or owner.terminal_id != terminal_id:
        raise AuthenticationFailed(
            _("Your session has expired or ended; please log in again"),
            code="customer_session_expired",
        )
    return check_token(uow, token, level=level)


def end_terminal_sessions(uow: UnitOfWork, terminal_id: str, *, except_token: str) -> None:
    """End the terminal's other customer sessions: a new login at a kiosk ends the
    previous customer's (PROTOCOL.md: a terminal holds at most one token)."""
    c = session_table.c
    uow.connection.execute(
        update(session_table)
        .where(
            c.terminal_id == terminal_id,
            c.ended_at.is_(None),
            c.token_hash != crypto.hash_token(except_token),
        )
        .values(ended_at=utcnow())
    )


def own_billing_account(
    uow: UnitOfWork, auth: CustomerAuth, account_id: str
) -> BillingAccountView | None:
    """A billing account of the authenticated customer (``auth`` from ``check_token``),
    for the customer's own channels, which hold no staff permission; ``None`` when the
    account is not theirs."""
    account = uow.session.scalars(
        select(BillingAccount).where(
            BillingAccount.id == account_id, BillingAccount.customer_id == auth.customer_id
        )
    ).first()
    return None if account is None else _account_view(account)


def masked_customer_names(conn: Connection, customer_ids: Sequence[str]) -> dict[str, str]:
    """Display names (individuals masked, ``张*``; organisations in full) by customer id.

    Core, no actor: for the kiosk's MSISDN_CHECK, which must show whose number is about to
    be paid (the terminal is authenticated, the name masked). Unknown ids are absent."""
    c = customer_table.c
    found: dict[str, str] = {}
    wanted = sorted(set(customer_ids))
    for start in range(0, len(wanted), _CHUNK):
        rows = conn.execute(
            select(c.id, c.name, c.category).where(c.id.in_(wanted[start : start + _CHUNK]))
        )
        for row in rows:
            found[row.id] = _display_name(row)
    return found
