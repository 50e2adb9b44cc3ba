"""What a kiosk shows about a line: ACCOUNT_SUMMARY (1010, the logged-in customer's own
line) and MSISDN_CHECK (1015, whether a number can be paid, asked before taking cash).

ACCOUNT_SUMMARY reads the inventory as the *customer* (an actor of kind ``customer``:
inventory lets a customer see their own lines and nothing else), the catalog for the
offer names, payments for the posted balance and customers for the credit limit. The
optional ``unbilled`` and ``points`` are left out: nothing computes them yet, and
PROTOCOL.md forbids made-up values.

MSISDN_CHECK needs no login (anyone may pay for any number, 代缴), so it is the one place
a terminal can learn whether a number exists: it is rate-limited per terminal and every
answer is audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from teleserve.catalog import service as catalog
from teleserve.core import crypto
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.errors import NotFound
from teleserve.core.logging import get_logger
from teleserve.core.masking import mask_phone
from teleserve.core.settings import get_settings
from teleserve.core.throttle import Rate, get_throttle
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.schemas import CustomerAuth
from teleserve.gateway import errors
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Result
from teleserve.gateway.errors import TspError
from teleserve.gateway.handlers.customer_errors import as_tsp
from teleserve.inventory import service as inventory
from teleserve.inventory.schemas import SubscriptionOut, SubscriptionStatus
from teleserve.payments import service as payments

log = get_logger("teleserve.gateway")

POSTPAID = "postpaid"


def _terminal(accepted: Accepted) -> str:
    return accepted.frame.header.terminal_id


# -- 1010 ACCOUNT_SUMMARY ------------------------------------------------------------------


@contextmanager
def _as_customer(uow: UnitOfWork, auth: CustomerAuth) -> Iterator[None]:
    """Run the block with the logged-in customer as the unit of work's actor, so the
    domains apply their customer rules (own lines only) instead of the terminal's
    organisation scope. The terminal stays the actor of everything else."""
    terminal = uow.actor
    uow.actor = Actor(ActorKind.customer, auth.customer_id, auth.org_path, frozenset(), terminal.id)
    try:
        yield
    finally:
        uow.actor = terminal


def tsp_status(line: SubscriptionOut) -> str:
    """The protocol's subscriber status: ``active`` only when the line is usable (no open
    bar); a barred line, or one not activated yet, is ``suspended``."""
    if line.status is SubscriptionStatus.terminated:
        return "terminated"
    if line.status is SubscriptionStatus.active and not line.bars:
        return "active"
    return "suspended"


def account_summary(uow: UnitOfWork, accepted: Accepted) -> Result:
    """1010 (level 1): the session's line."""
    with as_tsp():
        auth = customers.check_terminal_token(
            uow, accepted.body["customer_token"], _terminal(accepted)
        )
    try:
        with _as_customer(uow, auth):
            line = inventory.find_by_service_number(
                uow, auth.service_number, include_terminated=True
            )
    except NotFound:
        raise TspError(errors.SUBSCRIBER_NOT_FOUND) from None
    vas_codes = [v.code for v in line.vas]
    offers = catalog.offerings_by_code(uow, [line.plan_code, *vas_codes])

    def offer(code: str) -> dict[str, str]:
        # The zh-CN name: TSP/1 carries no language and the kiosk's customers read
        # Chinese. A code the catalog no longer knows is named by its code.
        found = offers.get(code)
        return {"offer_id": code, "name": found.name_zh if found is not None else code}

    account_id = line.billing_account_id
    balance = payments.customer_balances(uow.connection, [account_id]).get(account_id, 0)
    body: dict[str, Any] = {
        "msisdn": line.service_number,
        "status": tsp_status(line),
        "bars": [str(b.bar) for b in line.bars],
        "plan": offer(line.plan_code),
        "balance": balance,
        "vas": [offer(code) for code in vas_codes],
    }
    account = customers.own_billing_account(uow, auth, account_id)
    if account is not None and account.kind == POSTPAID:
        body["credit_limit"] = account.credit_limit
    return Result(body)


# -- 1015 MSISDN_CHECK ---------------------------------------------------------------------

# The throttle key's namespace (one counter per terminal; the customers service keeps its
# own for logins).
_CHECK_KEY = "gateway:msisdn-check:terminal:"


def _throttle(terminal: str) -> None:
    rate = Rate(get_settings().msisdn_check_per_minute_per_terminal, 60)
    throttle = get_throttle()
    key = _CHECK_KEY + terminal
    if not throttle.hit(key, rate):
        retry_after_s = throttle.retry_after(key, rate)
        log.warning("gateway.msisdn_check_throttled", terminal_id=terminal)
        raise TspError(errors.TOO_MANY_REQUESTS, {"retry_after_s": retry_after_s})


def msisdn_check(uow: UnitOfWork, accepted: Accepted) -> Result:
    """1015: ``payable`` (exists and not terminated) and the owner's masked name, empty
    when not payable. Always ``00000``, except ``20012`` past the terminal's rate."""
    terminal = _terminal(accepted)
    _throttle(terminal)
    number = accepted.body["msisdn"]
    conn = uow.connection
    line = inventory.payable_lines(conn, [number]).get(number)
    name = ""
    if line is not None:
        name = customers.masked_customer_names(conn, [line.customer_id]).get(line.customer_id, "")
    # Who asked (the actor: the terminal) about which number: the subject is a keyed
    # digest of the number, as for the customers service's authentication events (the
    # audit log never holds a number in clear; an investigator computes a number's digest
    # to find every check of it), the detail the masked number and the owner, if any.
    detail: dict[str, Any] = {
        "service_number": mask_phone(number),
        "terminal_id": terminal,
        "payable": line is not None,
    }
    if line is not None:
        detail["customer_id"] = line.customer_id
    digest = crypto.blind_index(number, "service_number")
    uow.audit("gateway.msisdn_checked", "service_number", digest, detail)
    return Result({"payable": line is not None, "customer_name": name})
