"""Customer authentication at a kiosk: CUSTOMER_LOGIN (1001), OTP_SEND (1002) and
CUSTOMER_LOGOUT (1003), on top of ``customers.service`` (docs/customer-auth.md).

What the gateway adds to the customers service:

- **tokens belong to the terminal** (PROTOCOL.md "Sessions and connections"): a token is
  only accepted from the terminal that logged the customer in (another terminal gets
  ``20010``), and a new login at a terminal ends the previous customer's session there;
- the request's ``msisdn`` must be the session's number when a second factor is added;
- the error codes of the protocol (``customer_errors``).

Throttles, lockout, one-time code limits and their audit records are the customers
service's. Nothing here logs or audits a secret, a code, an ID number or a token.
"""

from __future__ import annotations

from typing import Any

from teleserve.core.masking import mask_phone
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.schemas import CustomerToken
from teleserve.gateway import errors
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Result
from teleserve.gateway.errors import TspError
from teleserve.gateway.handlers.customer_errors import as_tsp


def _terminal(accepted: Accepted) -> str:
    return accepted.frame.header.terminal_id


def customer_login(uow: UnitOfWork, accepted: Accepted) -> Result:
    """1001: one factor gives level 1; with ``customer_token``, a second, different
    factor on that session gives level 2."""
    body = accepted.body
    terminal = _terminal(accepted)
    token = body.get("customer_token")
    try:
        with as_tsp():
            if token is None:
                login = _first_factor(uow, body, terminal)
                # A terminal holds at most one customer session: the previous one ends.
                customers.end_terminal_sessions(uow, terminal, except_token=login.token)
            else:
                login = _second_factor(uow, body, terminal, token)
    except TspError as exc:
        if not exc.code.startswith("2"):
            raise
        # A failed attempt is state too: the failure count, the lock it may cause and
        # their audit records. Answered, not raised, so the dispatcher keeps them (a
        # raised business error rolls the handler's savepoint back, audit records
        # included).
        return Result(exc.body(), exc.code)
    if body["method"] == "id_card":
        _audit_reader(uow, login, terminal, body["reader_id"])
    return Result(
        {
            "customer_token": login.token,
            "level": login.level,
            "expires_in_s": login.expires_in_s,
            "customer_name": login.customer_name,
        }
    )


def _first_factor(uow: UnitOfWork, body: dict[str, Any], terminal: str) -> CustomerToken:
    number = body["msisdn"]
    method = body["method"]
    if method == "password":
        return customers.login_with_password(uow, number, body["secret"], terminal)
    if method == "otp":
        return customers.login_with_otp(uow, number, body["secret"], terminal)
    return customers.login_with_id_card(
        uow,
        number,
        id_number=body["id_number"],
        id_name=body["id_name"],
        face_match_score=body["face_match_score"],
        terminal_id=terminal,
    )


def _second_factor(
    uow: UnitOfWork, body: dict[str, Any], terminal: str, token: str
) -> CustomerToken:
    auth = customers.check_terminal_token(uow, token, terminal)
    if auth.service_number != body["msisdn"]:
        # The session is another number's: the factor would prove nothing about it.
        raise TspError(errors.AUTH_FAILED)
    return customers.add_factor(
        uow,
        token,
        body["method"],
        secret=body.get("secret"),
        id_number=body.get("id_number"),
        id_name=body.get("id_name"),
        face_match_score=body.get("face_match_score"),
        terminal_id=terminal,
    )


def _audit_reader(uow: UnitOfWork, login: CustomerToken, terminal: str, reader_id: str) -> None:
    """Which ID reader vouched for the card. No registry of readers exists yet, so the
    reader is not checked against the terminal; recording it lets staff find every login
    a reader later found uncertified was used for."""
    uow.audit(
        "gateway.id_card_read",
        "customer",
        login.customer_id,
        {
            "service_number": mask_phone(login.service_number),
            "terminal_id": terminal,
            "reader_id": reader_id,
            "level": login.level,
        },
    )


def otp_send(uow: UnitOfWork, accepted: Accepted) -> Result:
    """1002 (recorded): the same answer whether or not the number exists; cooldown and
    daily caps are the customers service's (``20012``), a locked number ``20002``."""
    with as_tsp():
        sent = customers.send_otp(uow, accepted.body["msisdn"], _terminal(accepted))
    return Result({"expires_in_s": sent.expires_in_s})


def customer_logout(uow: UnitOfWork, accepted: Accepted) -> Result:
    """1003 (recorded; allowed out of service): ends the terminal's customer session.
    Like every level-1 request, an unknown, ended, expired or other terminal's token is
    ``20010`` (a resend of the same logout gets its recorded answer)."""
    token = accepted.body["customer_token"]
    with as_tsp():
        customers.check_terminal_token(uow, token, _terminal(accepted))
        customers.logout(uow, token)
    return Result({})
