"""The double-entry ledger of the payments domain (DESIGN.md section 5).

Internal to the domain: other domains go through ``teleserve.payments.service``.

Accounts (``ledger_account``, each named by a unique ``code``; its id is derived from the
code so a batch can name an account without reading it first):

- customer accounts, ``customer:<billing_account_id>`` — one per billing account of the
  customers domain, carrying that account's ``customer_id`` and ``org_path``.
  Credit-normal: a positive balance is money the operator holds for the customer.
- system accounts — ``cash_box:<box id>`` (kiosk cash box), ``cash_desk:<desk id>``
  (counter cash desk), ``clearing:card`` / ``clearing:web`` / ``clearing:api`` (what the
  card acquirer or online payment provider owes the operator) are debit-normal (assets);
  ``suspense`` (held money 挂账, owed to someone not yet identified), ``billing_clearing``
  and ``revenue`` are credit-normal. System accounts are created on first use.

Transfers (``ledger_transfer``) move an amount from a debit account to a credit account
and go ``pending`` → ``posted`` | ``voided``. Entries (``ledger_entry``) are written only
when a transfer is posted: two signed legs, debit ``+amount`` and credit ``-amount``, so
each transfer's entries — and therefore all entries — sum to zero at every commit. A
posted transfer is never edited; a reversal is a new, compensating transfer.

Pending money is kept apart from the posted book: a pending transfer has no entries, only
its row. An account's posted balance is ``sign(normal side) × SUM(entries)``; its pending
credit / debit are the SUMs of the amounts of pending transfers that credit / debit it;
``available`` is the posted balance minus the pending movement against its normal side.

Where the figures live:

- customer accounts keep ``balance``, ``pending_credit`` and ``pending_debit`` on their own
  row, updated (``SET balance = balance + :delta``) in the transaction that writes their
  entries or pending transfers — one customer's row is touched only by that customer's
  payments, so it is not a hot row, and reading a balance is one row;
- system accounts, which every payment of a channel touches, are never updated per
  payment: their figures are always rolled up with SUM over entries and pending transfers
  (indexed: ``ix_ledger_entry_account``, the partial pending indexes).

``check`` proves the invariants: entries sum to zero overall and per transfer, posted
transfers have exactly their two legs and others none, every customer balance row equals
its entries and pending transfers, and no entry names an unknown account.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, Table, bindparam, case, func, select, update
from sqlalchemy.dialects import sqlite

from teleserve.core.db import (
    execute_many,
    in_parameter,
    insert_many,
    insert_or_nothing,
    insert_or_nothing_from_arrays,
)
from teleserve.core.reads import fetch
from teleserve.core.sequences import RecordSequence
from teleserve.payments.models import (
    RECEIPT_COUNTER,
    RECEIPT_SEQUENCE,
    AccountKind,
    AccountStatus,
    NormalSide,
    PaymentStatus,
    TransferKind,
    TransferStatus,
    account_table,
    entry_table,
    idempotency_table,
    payment_table,
    transfer_table,
)
from teleserve.payments.schemas import AccountBalance

SUSPENSE = "suspense"
BILLING_CLEARING = "billing_clearing"
REVENUE = "revenue"

# Balance shown = SIGN[normal side] × SUM(signed entries).
SIGN = {NormalSide.debit: 1, NormalSide.credit: -1}

_SYSTEM_SIDES = {
    "cash_box": NormalSide.debit,
    "cash_desk": NormalSide.debit,
    "clearing": NormalSide.debit,
    SUSPENSE: NormalSide.credit,
    BILLING_CLEARING: NormalSide.credit,
    REVENUE: NormalSide.credit,
}

# Bound parameters per IN (...) list, well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


def account_id_for(code: str) -> str:
    """The account id of ``code``: 32 hex digits of BLAKE2b, stable across databases."""
    return hashlib.blake2b(code.encode(), digest_size=16).hexdigest()


def customer_code(billing_account_id: str) -> str:
    return f"customer:{billing_account_id}"


def system_side(code: str) -> NormalSide:
    family = code.split(":", 1)[0]
    try:
        return _SYSTEM_SIDES[family]
    except KeyError:
        raise ValueError(f"not a system account code: {code!r}") from None


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- accounts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerAccount:
    id: str
    billing_account_id: str
    customer_id: str | None
    org_path: str
    status: str

    @property
    def is_open(self) -> bool:
        return self.status == AccountStatus.open


# By dialect (``in_parameter``: an array on PostgreSQL), built once.
_ACCOUNTS_BY_ID = {
    dialect: select(
        account_table.c.id,
        account_table.c.kind,
        account_table.c.billing_account_id,
        account_table.c.customer_id,
        account_table.c.org_path,
        account_table.c.status,
    ).where(in_parameter(account_table.c.id, "ids", dialect))
    for dialect in ("sqlite", "postgresql")
}


def load_accounts(
    conn: Connection, billing_account_ids: Collection[str], system_codes: Collection[str] = ()
) -> tuple[dict[str, CustomerAccount], set[str]]:
    """The customer accounts of these billing accounts (by billing account id) and which
    of ``system_codes`` exist — one primary-key lookup, since ids derive from codes."""
    wanted = {account_id_for(customer_code(ba)) for ba in billing_account_ids}
    codes_by_id = {account_id_for(code): code for code in system_codes}
    customers: dict[str, CustomerAccount] = {}
    systems: set[str] = set()
    for part in chunks(sorted(wanted | set(codes_by_id))):
        for row in fetch(conn, _ACCOUNTS_BY_ID[conn.dialect.name], {"ids": list(part)}):
            if row.kind == AccountKind.customer:
                customers[row.billing_account_id] = CustomerAccount(
                    row.id, row.billing_account_id, row.customer_id, row.org_path, row.status
                )
            elif row.id in codes_by_id:
                systems.add(codes_by_id[row.id])
    return customers, systems


def customer_accounts(
    conn: Connection, billing_account_ids: Collection[str]
) -> dict[str, CustomerAccount]:
    """The customer accounts of these billing accounts, by billing account id."""
    return load_accounts(conn, billing_account_ids)[0]


def insert_customer_accounts(
    conn: Connection, rows: Sequence[Mapping[str, Any]], *, now: datetime
) -> set[str]:
    """Create the missing customer accounts of ``rows`` (``billing_account_id``,
    ``customer_id``, ``org_path``, ``currency``); returns the billing account ids created."""
    created: set[str] = set()
    if not rows:
        return created
    values = [
        {
            "id": account_id_for(customer_code(r["billing_account_id"])),
            "code": customer_code(r["billing_account_id"]),
            "kind": AccountKind.customer.value,
            "normal_side": NormalSide.credit.value,
            "status": AccountStatus.open.value,
            "currency": r["currency"],
            "billing_account_id": r["billing_account_id"],
            "customer_id": r["customer_id"],
            "org_path": r["org_path"],
            "balance": 0,
            "pending_credit": 0,
            "pending_debit": 0,
            "created_at": now,
            "closed_at": None,
        }
        for r in sorted(rows, key=lambda r: str(r["billing_account_id"]))
    ]
    if conn.dialect.name == "sqlite":
        return _insert_customer_accounts_sqlite(conn, values)
    if len(values) >= _UNNEST_MIN_ROWS:
        inserted = insert_or_nothing_from_arrays(
            conn, account_table, values, returning=("billing_account_id",)
        )
        return {str(row.billing_account_id) for row in inserted}
    statement = insert_or_nothing(conn, account_table, returning="billing_account_id")
    for part in chunks(values):
        created.update(conn.execute(statement, list(part)).scalars())
    return created


# From this many rows PostgreSQL gets the customer accounts as arrays in one statement
# (``db.insert_or_nothing_from_arrays``): a multi-row VALUES list binds 14 parameters a
# row, which SQLAlchemy renders and psycopg adapts one by one — it was the seed's
# costliest statement on PostgreSQL, ~35 us of client CPU per account.
_UNNEST_MIN_ROWS = 16


def _insert_customer_accounts_sqlite(conn: Connection, values: list[dict[str, Any]]) -> set[str]:
    """SQLite: the transaction has held the database's write lock since its first
    statement (BEGIN IMMEDIATE), so the rows absent now are exactly those this insert
    creates — one read and one executemany, instead of multi-row INSERT .. RETURNING
    statements built per chunk."""
    existing: set[str] = set()
    for part in chunks([v["id"] for v in values]):
        existing.update(conn.execute(_EXISTING_IDS, {"ids": list(part)}).scalars())
    fresh = [v for v in values if v["id"] not in existing]
    execute_many(conn, insert_or_nothing(conn, account_table), fresh)
    return {str(v["billing_account_id"]) for v in fresh}


_EXISTING_IDS = select(account_table.c.id).where(
    account_table.c.id.in_(bindparam("ids", expanding=True))
)


def ensure_system_accounts(
    conn: Connection, codes: Mapping[str, str], *, currency: str, now: datetime
) -> None:
    """Create the system accounts ``codes`` (code → owning org path) that do not exist.

    ON CONFLICT DO NOTHING takes no lock on an existing row, so naming a busy account in
    every batch costs one cheap statement, not a hot row."""
    if not codes:
        return
    rows = [
        {
            "id": account_id_for(code),
            "code": code,
            "kind": AccountKind.system.value,
            "normal_side": system_side(code).value,
            "status": AccountStatus.open.value,
            "currency": currency,
            "billing_account_id": None,
            "customer_id": None,
            "org_path": org_path,
            "balance": 0,
            "pending_credit": 0,
            "pending_debit": 0,
            "created_at": now,
            "closed_at": None,
        }
        for code, org_path in sorted(codes.items())
    ]
    execute_many(conn, insert_or_nothing(conn, account_table), rows)


# -- transfers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    kind: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    pending: bool = False
    payment_id: str | None = None
    reverses_id: str | None = None


# Built once: constructing a statement costs more Python than running it on SQLite.
_APPLY_DELTAS = (
    update(account_table)
    .where(account_table.c.id == bindparam("d_id"))
    .values(
        balance=account_table.c.balance + bindparam("d_balance"),
        pending_credit=account_table.c.pending_credit + bindparam("d_pending_credit"),
        pending_debit=account_table.c.pending_debit + bindparam("d_pending_debit"),
    )
)


@dataclass(slots=True)
class _Delta:
    balance: int = 0
    pending_credit: int = 0
    pending_debit: int = 0


class _Deltas:
    """Changes to customer balance rows, summed per account and applied in one batch.

    Customer accounts are credit-normal: a credit leg raises the balance."""

    def __init__(self, maintained: Collection[str]) -> None:
        self.maintained = maintained
        self.by_account: dict[str, _Delta] = {}

    def _get(self, account_id: str) -> _Delta | None:
        if account_id not in self.maintained:
            return None
        return self.by_account.setdefault(account_id, _Delta())

    def posted(self, debit_id: str, credit_id: str, amount: int) -> None:
        if (debit := self._get(debit_id)) is not None:
            debit.balance -= amount
        if (credit := self._get(credit_id)) is not None:
            credit.balance += amount

    def pending(self, debit_id: str, credit_id: str, amount: int) -> None:
        """``amount`` > 0 opens a pending transfer, < 0 resolves one."""
        if (debit := self._get(debit_id)) is not None:
            debit.pending_debit += amount
        if (credit := self._get(credit_id)) is not None:
            credit.pending_credit += amount

    def apply(self, conn: Connection) -> None:
        rows = [
            {
                "d_id": account_id,
                "d_balance": d.balance,
                "d_pending_credit": d.pending_credit,
                "d_pending_debit": d.pending_debit,
            }
            # Ascending id order: two transactions never wait on each other's rows in
            # opposite orders (no deadlock on PostgreSQL).
            for account_id, d in sorted(self.by_account.items())
            if d.balance or d.pending_credit or d.pending_debit
        ]
        if rows:
            execute_many(conn, _APPLY_DELTAS, rows)


def _entries(
    transfer_id: str, debit_id: str, credit_id: str, amount: int, day: date, now: datetime
) -> list[dict[str, Any]]:
    leg = {"transfer_id": transfer_id, "business_date": day, "posted_at": now}
    return [
        {**leg, "account_id": debit_id, "amount": amount},
        {**leg, "account_id": credit_id, "amount": -amount},
    ]


def write_transfers(
    conn: Connection,
    transfers: Sequence[Transfer],
    *,
    now: datetime,
    day: date,
    maintained: Collection[str],
) -> None:
    """Write ``transfers`` (posted ones with their entries) in three batched statements
    plus one for the balance rows of the customer accounts in ``maintained``."""
    if not transfers:
        return
    deltas = _Deltas(maintained)
    transfer_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    for tr in transfers:
        if tr.amount <= 0 or tr.debit_account_id == tr.credit_account_id:
            raise ValueError(f"malformed transfer {tr}")  # a bug, never user input
        status = TransferStatus.pending if tr.pending else TransferStatus.posted
        transfer_rows.append(
            {
                "id": tr.id,
                "payment_id": tr.payment_id,
                "kind": str(tr.kind),
                "debit_account_id": tr.debit_account_id,
                "credit_account_id": tr.credit_account_id,
                "amount": tr.amount,
                "status": status.value,
                "reverses_id": tr.reverses_id,
                "business_date": day,
                "created_at": now,
                "posted_at": None if tr.pending else now,
                "voided_at": None,
            }
        )
        if tr.pending:
            deltas.pending(tr.debit_account_id, tr.credit_account_id, tr.amount)
        else:
            entry_rows += _entries(
                tr.id, tr.debit_account_id, tr.credit_account_id, tr.amount, day, now
            )
            deltas.posted(tr.debit_account_id, tr.credit_account_id, tr.amount)
    insert_many(conn, transfer_table, transfer_rows)
    insert_many(conn, entry_table, entry_rows)
    deltas.apply(conn)


def resolve_pending(
    conn: Connection,
    transfer_id: str,
    *,
    post: bool,
    now: datetime,
    day: date,
    maintained: Collection[str],
) -> None:
    """Post (write its entries) or void a pending transfer. The caller holds the lock of
    the payment it belongs to, so nobody resolves it concurrently."""
    t = transfer_table
    row = conn.execute(
        select(t.c.debit_account_id, t.c.credit_account_id, t.c.amount, t.c.status).where(
            t.c.id == transfer_id
        )
    ).one()
    if row.status != TransferStatus.pending:
        raise ValueError(f"transfer {transfer_id} is {row.status}, not pending")
    values: dict[str, Any] = (
        {"status": TransferStatus.posted.value, "posted_at": now}
        if post
        else {"status": TransferStatus.voided.value, "voided_at": now}
    )
    conn.execute(update(t).where(t.c.id == transfer_id).values(**values))
    deltas = _Deltas(maintained)
    deltas.pending(row.debit_account_id, row.credit_account_id, -row.amount)
    if post:
        conn.execute(
            entry_table.insert(),
            _entries(
                transfer_id, row.debit_account_id, row.credit_account_id, row.amount, day, now
            ),
        )
        deltas.posted(row.debit_account_id, row.credit_account_id, row.amount)
    deltas.apply(conn)


# -- receipt numbers -------------------------------------------------------------------


_NEXT_SERIALS_PG = select(RECEIPT_SEQUENCE.next_value()).select_from(
    func.generate_series(1, bindparam("n"))
)
_COUNTERS = cast(Table, RecordSequence.__table__)
_NEXT_SERIALS_SQLITE = (
    sqlite.insert(_COUNTERS)
    .values(name=RECEIPT_COUNTER, value=bindparam("n"))
    .on_conflict_do_update(
        index_elements=[_COUNTERS.c.name], set_={"value": _COUNTERS.c.value + bindparam("n")}
    )
    .returning(_COUNTERS.c.value)
)


def receipt_serials(conn: Connection, count: int) -> list[int]:
    """``count`` fresh receipt serials in one statement.

    PostgreSQL: a SEQUENCE (no row lock, so concurrent batches never serialise on it).
    SQLite: one counter row advanced by ``count`` — SQLite has a single writer anyway."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        serials = conn.execute(_NEXT_SERIALS_PG, {"n": count}).scalars()
        return sorted(int(s) for s in serials)
    [(last,)] = fetch(conn, _NEXT_SERIALS_SQLITE, {"n": count})
    last = int(last)
    return list(range(last - count + 1, last + 1))


def receipt_number(day: date, serial: int) -> str:
    """``R`` + business date + serial (≥ 8 digits): ``R2026112500000123``. The serial is
    unique per database and increasing; the date is for the people reading it."""
    return f"R{day:%Y%m%d}{serial:08d}"


# -- figures ---------------------------------------------------------------------------


def figures(conn: Connection, account: RowMapping) -> AccountBalance:
    """The balance figures of one ``ledger_account`` row."""
    side = NormalSide(account["normal_side"])
    if account["kind"] == AccountKind.customer:
        balance = int(account["balance"])
        pending_credit = int(account["pending_credit"])
        pending_debit = int(account["pending_debit"])
    else:
        account_id = account["id"]
        total = conn.execute(
            select(func.coalesce(func.sum(entry_table.c.amount), 0)).where(
                entry_table.c.account_id == account_id
            )
        ).scalar_one()
        balance = SIGN[side] * int(total)
        pending_credit = _pending_sum(conn, transfer_table.c.credit_account_id, account_id)
        pending_debit = _pending_sum(conn, transfer_table.c.debit_account_id, account_id)
    against = pending_debit if side is NormalSide.credit else pending_credit
    return AccountBalance(
        account_id=account["id"],
        code=account["code"],
        kind=account["kind"],
        normal_side=side.value,
        status=account["status"],
        currency=account["currency"],
        balance=balance,
        pending_credit=pending_credit,
        pending_debit=pending_debit,
        available=balance - against,
        billing_account_id=account["billing_account_id"],
        customer_id=account["customer_id"],
    )


def _pending_sum(conn: Connection, column: Any, account_id: str) -> int:
    t = transfer_table
    total = conn.execute(
        select(func.coalesce(func.sum(t.c.amount), 0)).where(
            column == account_id, t.c.status == TransferStatus.pending.value
        )
    ).scalar_one()
    return int(total)


# -- consistency check -----------------------------------------------------------------


def check(conn: Connection) -> list[str]:
    """Every broken ledger invariant, as readable lines (empty when consistent)."""
    problems: list[str] = []
    e, t, a = entry_table, transfer_table, account_table

    total = conn.execute(select(func.coalesce(func.sum(e.c.amount), 0))).scalar_one()
    if int(total) != 0:
        problems.append(f"all entries sum to {total}, not 0")

    per_transfer = (
        select(
            e.c.transfer_id,
            func.sum(e.c.amount).label("total"),
            func.count().label("legs"),
            func.sum(func.abs(e.c.amount)).label("size"),
        )
        .group_by(e.c.transfer_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            t.c.id,
            t.c.status,
            t.c.amount,
            per_transfer.c.total,
            per_transfer.c.legs,
            per_transfer.c.size,
        )
        .select_from(t.outerjoin(per_transfer, per_transfer.c.transfer_id == t.c.id))
        .where(
            (per_transfer.c.total != 0)
            | (
                (t.c.status == TransferStatus.posted.value)
                & (func.coalesce(per_transfer.c.legs, 0) != 2)
            )
            | (
                (t.c.status == TransferStatus.posted.value)
                & (per_transfer.c.size != 2 * t.c.amount)
            )
            | ((t.c.status != TransferStatus.posted.value) & (per_transfer.c.legs.is_not(None)))
        )
    )
    for row in rows:
        problems.append(
            f"transfer {row.id} ({row.status}, {row.amount}): {row.legs or 0} entries "
            f"summing to {row.total or 0}"
        )

    orphan_rows = conn.execute(
        select(e.c.transfer_id, e.c.account_id)
        .select_from(
            e.outerjoin(a, a.c.id == e.c.account_id).outerjoin(t, t.c.id == e.c.transfer_id)
        )
        .where(a.c.id.is_(None) | t.c.id.is_(None))
    )
    for orphan in orphan_rows:
        problems.append(
            f"entry of transfer {orphan.transfer_id} names unknown account or transfer "
            f"({orphan.account_id})"
        )

    problems += _check_balance_rows(conn)
    problems += _check_payments(conn)
    problems += _check_payment_keys(conn)
    return problems


def _check_payment_keys(conn: Connection) -> list[str]:
    """Each payment is the one its idempotency key names: the key's uniqueness lives in
    ``payment_idempotency`` alone (``models.Payment``), so a payment without its claim —
    or a second payment under a claimed key — shows here."""
    p, i = payment_table, idempotency_table
    rows = conn.execute(
        select(p.c.receipt_no, p.c.idempotency_key)
        .select_from(p.outerjoin(i, (i.c.key == p.c.idempotency_key) & (i.c.payment_id == p.c.id)))
        .where(i.c.key.is_(None))
        .order_by(p.c.receipt_no)
    )
    return [
        f"payment {row.receipt_no} is not the one its key {row.idempotency_key!r} names"
        for row in rows
    ]


def _check_balance_rows(conn: Connection) -> list[str]:
    e, t, a = entry_table, transfer_table, account_table
    posted = (
        select(e.c.account_id, func.sum(e.c.amount).label("total"))
        .group_by(e.c.account_id)
        .subquery()
    )
    pending = TransferStatus.pending.value
    credits = (
        select(t.c.credit_account_id.label("account_id"), func.sum(t.c.amount).label("total"))
        .where(t.c.status == pending)
        .group_by(t.c.credit_account_id)
        .subquery()
    )
    debits = (
        select(t.c.debit_account_id.label("account_id"), func.sum(t.c.amount).label("total"))
        .where(t.c.status == pending)
        .group_by(t.c.debit_account_id)
        .subquery()
    )
    # Customer rows must equal their roll-ups; system rows are never maintained (zeros).
    customer = a.c.kind == AccountKind.customer.value
    expected_balance = case(
        (
            customer,
            case((a.c.normal_side == NormalSide.credit.value, -1), else_=1)
            * func.coalesce(posted.c.total, 0),
        ),
        else_=0,
    )
    expected_credit = case((customer, func.coalesce(credits.c.total, 0)), else_=0)
    expected_debit = case((customer, func.coalesce(debits.c.total, 0)), else_=0)
    rows = conn.execute(
        select(
            a.c.code,
            a.c.balance,
            a.c.pending_credit,
            a.c.pending_debit,
            expected_balance.label("expected_balance"),
            expected_credit.label("expected_credit"),
            expected_debit.label("expected_debit"),
        )
        .select_from(
            a.outerjoin(posted, posted.c.account_id == a.c.id)
            .outerjoin(credits, credits.c.account_id == a.c.id)
            .outerjoin(debits, debits.c.account_id == a.c.id)
        )
        .where(
            (a.c.balance != expected_balance)
            | (a.c.pending_credit != expected_credit)
            | (a.c.pending_debit != expected_debit)
        )
        .order_by(a.c.code)
    )
    return [
        f"account {row.code}: row says balance {row.balance}, pending +{row.pending_credit}"
        f"/-{row.pending_debit}; entries say {row.expected_balance}, "
        f"+{row.expected_credit}/-{row.expected_debit}"
        for row in rows
    ]


def _refunds() -> Any:
    """The cash desk that paid back each refunded payment (its posted ``refund``
    transfer), as a subquery keyed by payment."""
    t = transfer_table
    return (
        select(t.c.payment_id, t.c.credit_account_id.label("desk"))
        .where(t.c.kind == TransferKind.refund.value, t.c.status == TransferStatus.posted.value)
        .subquery()
    )


def _check_payments(conn: Connection) -> list[str]:
    """Each payment's money left its source account once and sits where its status says:
    on its customer account (completed), in suspense (held), nowhere yet (pending), back
    at the source (reversed: posted, then compensated), or — reversed by a refund of held
    money — paid out of the cash desk that refunded it (the source keeps what came in;
    a desk that refunds into itself nets both to zero)."""
    e, t, p = entry_table, transfer_table, payment_table
    inner_refund, outer_refund = _refunds(), _refunds()
    legs = (
        e.join(t, t.c.id == e.c.transfer_id)
        .join(p, p.c.id == t.c.payment_id)
        .outerjoin(inner_refund, inner_refund.c.payment_id == p.c.id)
    )
    location = case(
        (p.c.status == PaymentStatus.completed.value, p.c.ledger_account_id),
        (p.c.status == PaymentStatus.held.value, account_id_for(SUSPENSE)),
        (p.c.status == PaymentStatus.reversed.value, inner_refund.c.desk),
        else_=None,
    )
    # One pass over the entries, grouped by payment (an entry is found through its
    # transfer): a per-account lookup would scan a busy cash box's entries once per
    # transfer, which grows quadratically with the ledger.
    totals = (
        select(
            t.c.payment_id,
            func.sum(case((e.c.account_id == p.c.source_account_id, e.c.amount), else_=0)).label(
                "source"
            ),
            func.sum(case((e.c.account_id == location, e.c.amount), else_=0)).label("location"),
        )
        .select_from(legs)
        .group_by(t.c.payment_id)
        .subquery()
    )
    refunded = (p.c.status == PaymentStatus.reversed.value) & (
        outer_refund.c.desk.is_not(None) & (outer_refund.c.desk != p.c.source_account_id)
    )
    moved = p.c.status.in_([PaymentStatus.completed.value, PaymentStatus.held.value]) | refunded
    expected_source = case((moved, p.c.amount), else_=0)
    expected_location = case((moved, -p.c.amount), else_=0)
    source_total = func.coalesce(totals.c.source, 0)
    location_total = func.coalesce(totals.c.location, 0)
    rows = conn.execute(
        select(
            p.c.receipt_no,
            p.c.status,
            p.c.amount,
            source_total.label("source"),
            location_total.label("location"),
        )
        .select_from(
            p.outerjoin(totals, totals.c.payment_id == p.c.id).outerjoin(
                outer_refund, outer_refund.c.payment_id == p.c.id
            )
        )
        .where((source_total != expected_source) | (location_total != expected_location))
        .order_by(p.c.receipt_no)
    )
    return [
        f"payment {row.receipt_no} ({row.status}, {row.amount}): its source account shows "
        f"{row.source}, the account holding it shows {row.location}"
        for row in rows
    ]
