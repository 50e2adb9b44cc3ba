"""The customer flows the touch UI calls: number check, cash and card payment, reversal,
receipt reprint, customer login, account summary and logout.

Each flow checks that its function is available (devices and service), talks to the
devices and the server, and raises ``FlowError`` with a message in both languages when
the customer must be told something. A server error keeps the server's own texts
(``message`` / ``message_zh`` travel in every error body).

Cash (DESIGN.md §6): ``start_cash`` opens a cash-in (its row in the journal first, so a
crash returns the escrow), notes go to escrow, ``confirm_cash`` journals the request with
the escrow contents, serial and exact bytes, *then* stacks, then sends; the journal
resends until answered. A card payment is journaled after the acquirer approved it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teleserve.core.i18n import _, translate
from teleserve.gateway.errors import CUSTOMER_SESSION_ENDED, OUT_OF_SERVICE
from teleserve.kiosk.availability import Function, Link
from teleserve.kiosk.client import Answer, ProtocolFault, TerminalRefused, TransportError
from teleserve.kiosk.devices.base import (
    CardDeclined,
    DeviceError,
    Notes,
    notes_list,
    notes_total,
)
from teleserve.kiosk.journal import Entry, State

if TYPE_CHECKING:
    from teleserve.kiosk.agent import Agent


class FlowError(Exception):
    """What the customer is told. ``message`` is a message id (translated here) unless
    ``message_zh`` is given (a server error's own two texts)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        message_zh: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self._zh = message_zh
        self.details = details or {}

    def text(self, locale: str) -> str:
        if self._zh is not None:
            return self._zh if locale.lower().startswith("zh") else self.message
        return translate(self.message, locale)


class Unavailable(FlowError):
    """The function is disabled now (the reason says why)."""


class NoAnswer(FlowError):
    """The server did not answer in time."""


class Refused(FlowError):
    """The server answered an error."""


NO_ANSWER = _("The service did not answer; please try again later")
NOTHING_INSERTED = _("No notes have been inserted")
NO_CASH_IN = _("No cash payment is in progress")
CARD_DECLINED = _("The card was declined")
NOT_LOGGED_IN = _("Please log in first")
DEVICE_FAILED = _("The device failed; please ask the staff for help")
NO_PAYMENT = _("No payment with this serial was made at this terminal")


@dataclass(frozen=True, slots=True)
class NumberCheck:
    payable: bool
    customer_name: str


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    serial: int
    amount: int
    answered: bool  # False: journaled, the journal resends until answered
    status: str | None = None  # completed, pending, held (voided after a reversal)
    txn_id: str | None = None
    held_reason: str | None = None
    balance_after: int | None = None
    receipt: list[str] = field(default_factory=list)
    printed: bool = False


@dataclass(frozen=True, slots=True)
class ReversalOutcome:
    serial: int
    answered: bool
    status: str | None = None  # the original payment's status after the reversal
    txn_id: str | None = None
    balance_after: int | None = None


def mask_number(msisdn: str) -> str:
    """``138****8000`` (DESIGN.md §5): first three and last four kept."""
    if len(msisdn) <= 7:
        return msisdn[:1] + "*" * (len(msisdn) - 2) + msisdn[-1:]
    return msisdn[:3] + "*" * (len(msisdn) - 7) + msisdn[-4:]


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals: ``-150`` → ``-1.50`` (floor division alone would
    give ``-2.50``)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


class CustomerFlows:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.customer_token: str | None = None

    # -- helpers -------------------------------------------------------------------------
    def _require(self, function: Function) -> None:
        availability = self.agent.functions()[function]
        if not availability.enabled:
            assert availability.reason is not None
            raise Unavailable(availability.reason)

    async def _ask(self, serv_type: int, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self.agent.ask(serv_type, body)
        except (TransportError, TerminalRefused, ProtocolFault) as exc:
            raise NoAnswer(NO_ANSWER) from exc
        return self._body(answer)

    def _body(self, answer: Answer) -> dict[str, Any]:
        if answer.ok:
            return answer.body
        if answer.err_number == CUSTOMER_SESSION_ENDED:
            self.customer_token = None
        if answer.err_number == OUT_OF_SERVICE:
            raise Unavailable(_("This terminal is out of service"), code=OUT_OF_SERVICE)
        error = answer.error
        raise Refused(
            str(error.get("message") or answer.err_number),
            code=answer.err_number,
            message_zh=str(error.get("message_zh") or error.get("message") or ""),
            details=answer.details,
        )

    async def _print(self, lines: list[str]) -> bool:
        if not lines or not self.agent.functions()[Function.RECEIPT].enabled:
            return False
        try:
            await self.agent.devices.printer.print_receipt(lines)
        except DeviceError:
            await self.agent.refresh_devices()
            return False
        return True

    # -- number check ----------------------------------------------------------------------
    async def check_number(self, msisdn: str) -> NumberCheck:
        """MSISDN_CHECK (1015), asked before taking any money."""
        self._require(Function.ACCOUNT)
        body = await self._ask(1015, {"msisdn": msisdn})
        return NumberCheck(bool(body.get("payable")), str(body.get("customer_name") or ""))

    # -- cash ------------------------------------------------------------------------------
    async def start_cash(self, msisdn: str) -> None:
        """Open a cash-in for ``msisdn``: notes inserted now go to escrow."""
        self._require(Function.CASH_PAYMENT)
        journal = self.agent.journal
        # The row first: if we crash with notes in escrow, recovery gives them back.
        journal.open_cash_in(msisdn)
        try:
            await self.agent.devices.cash.cash_in_start()
        except DeviceError as exc:
            journal.close_cash_in()
            await self.agent.refresh_devices()
            raise Unavailable(DEVICE_FAILED, details={"device": exc.reason}) from exc

    async def cash_escrow(self) -> Notes:
        return await self.agent.devices.cash.escrow()

    async def cancel_cash(self) -> Notes:
        """The customer cancels before confirming: the escrow goes back."""
        if self.agent.journal.cash_in() is None:
            raise FlowError(NO_CASH_IN)
        try:
            returned = await self.agent.devices.cash.rollback()
        except DeviceError as exc:
            await self.agent.refresh_devices()
            raise FlowError(DEVICE_FAILED, details={"device": exc.reason}) from exc
        self.agent.journal.close_cash_in()
        return returned

    async def confirm_cash(self, amount: int | None = None) -> PaymentOutcome:
        """The customer confirms: journal (escrow contents, serial, exact bytes) → stack
        → CASH_PAYMENT → receipt. ``amount``: what the customer declared (the escrow's
        total by default; the notes are the truth either way)."""
        agent = self.agent
        msisdn = agent.journal.cash_in()
        if msisdn is None:
            raise FlowError(NO_CASH_IN)
        escrow = await agent.devices.cash.escrow()
        if not escrow:
            raise FlowError(NOTHING_INSERTED)
        total = notes_total(escrow)
        declared = total if amount is None else amount
        box_id = agent.journal.cash_box_id or ""
        body = {
            "msisdn": msisdn,
            "amount": declared,
            "notes": notes_list(escrow),
            "cash_box_id": box_id,
            "txn_time_ms": agent.clock.now_ms(),
        }
        entry = agent.journal_request(
            2001,
            body,
            state=State.JOURNALED,
            amount=declared,
            cash_box_id=box_id,
            notes=escrow,
            close_cash_in=True,
        )
        try:
            await agent.devices.cash.stack()
        except DeviceError as exc:
            await agent.refresh_devices()
            status = await agent.devices.cash.cash_in_status()
            entry = await agent.settle_unstacked(entry, status.state)
            if entry.state is State.CANCELLED:
                raise FlowError(DEVICE_FAILED, details={"device": exc.reason}) from exc
        else:
            entry = agent.journal.mark_stacked(entry.serial)
        return await self._pay(entry, msisdn)

    # -- card ------------------------------------------------------------------------------
    async def card_payment(self, msisdn: str, amount: int) -> PaymentOutcome:
        """Authorise with the acquirer through the card module, then CARD_PAYMENT (2002)
        with only bin / last4 / references. A declined card sends nothing."""
        self._require(Function.CARD_PAYMENT)
        if amount <= 0:
            raise FlowError(_("The amount must be positive"))
        try:
            result = await self.agent.devices.card.authorise(amount)
        except DeviceError as exc:
            await self.agent.refresh_devices()
            raise FlowError(DEVICE_FAILED, details={"device": exc.reason}) from exc
        if isinstance(result, CardDeclined):
            raise Refused(CARD_DECLINED, code="card_declined", details={"reason": result.reason})
        body = {
            "msisdn": msisdn,
            "amount": amount,
            "card": result.as_body(),
            "txn_time_ms": self.agent.clock.now_ms(),
        }
        entry = self.agent.journal_request(2002, body, amount=amount)
        return await self._pay(entry, msisdn)

    async def _pay(self, entry: Entry, msisdn: str) -> PaymentOutcome:
        agent = self.agent
        amount = entry.amount or 0
        answer = await agent.send_entry(entry)
        entry = agent.journal.entry(entry.serial)
        if answer is None or entry.state is not State.ANSWERED or not answer.ok:
            # Not answered yet, or refused for good (staff were alarmed; a card
            # authorisation was voided). The customer gets a receipt with the serial.
            failed = entry.state in (State.REJECTED, State.CONFLICT)
            lines = self._provisional_receipt(entry, msisdn, amount, failed=failed)
            return PaymentOutcome(
                entry.serial,
                amount,
                False,
                status=entry.state.value if failed else None,
                receipt=lines,
                printed=await self._print(lines),
            )
        body = answer.body
        receipt = body.get("receipt")
        lines = [str(x) for x in receipt.get("lines", [])] if isinstance(receipt, dict) else []
        balance = body.get("balance_after")
        return PaymentOutcome(
            serial=entry.serial,
            amount=amount,
            answered=True,
            status=str(body.get("status")),
            txn_id=str(body.get("txn_id")),
            held_reason=held if isinstance(held := body.get("held_reason"), str) else None,
            balance_after=balance if isinstance(balance, int) else None,
            receipt=lines,
            printed=await self._print(lines),
        )

    def _provisional_receipt(
        self, entry: Entry, msisdn: str, amount: int, *, failed: bool
    ) -> list[str]:
        def both(message: str) -> str:
            return f"{translate(message, 'zh-CN')} / {translate(message, 'en')}"

        head = (
            _("The payment could not be recorded; please ask the staff for help")
            if failed
            else _("Payment received, awaiting confirmation")
        )
        return [
            both(head),
            f"{self.agent.config.terminal_id}  #{entry.serial}",
            f"{mask_number(msisdn)}  ¥{yuan(amount)}",
            both(_("Quote the serial number above if the payment does not arrive")),
        ]

    # -- reversal, reprint -----------------------------------------------------------------------
    async def reverse(
        self, original_serial: int, reason: str = "customer_cancel"
    ) -> ReversalOutcome:
        """REVERSAL (2009) of one of this terminal's payments; a card payment voided by
        it is reversed with the acquirer too (``Agent._after_answer``)."""
        self._require(Function.ACCOUNT)
        original = self.agent.journal.find(original_serial)
        if original is None or original.serv_type not in (2001, 2002):
            raise FlowError(NO_PAYMENT)
        entry = self.agent.journal_request(
            2009, {"original_serial": original_serial, "reason": reason}
        )
        answer = await self.agent.send_entry(entry)
        if answer is None:
            return ReversalOutcome(entry.serial, False)
        body = self._body(answer)
        balance = body.get("balance_after")
        return ReversalOutcome(
            entry.serial,
            True,
            status=str(body.get("status")),
            txn_id=str(body.get("txn_id")),
            balance_after=balance if isinstance(balance, int) else None,
        )

    async def reprint(self, original_serial: int) -> list[str]:
        """RECEIPT (2010): the receipt again, printed; returns its lines."""
        self._require(Function.RECEIPT)
        self._require(Function.ACCOUNT)
        body = await self._ask(2010, {"original_serial": original_serial})
        receipt = body.get("receipt")
        lines = [str(x) for x in receipt.get("lines", [])] if isinstance(receipt, dict) else []
        await self._print(lines)
        return lines

    # -- customer login ---------------------------------------------------------------------------
    async def login(self, msisdn: str, method: str, secret: str) -> dict[str, Any]:
        """CUSTOMER_LOGIN (1001) with a service password or a one-time code; a second
        factor is added to the token held now."""
        self._require(Function.ACCOUNT)
        if method not in ("password", "otp"):
            raise FlowError(_("Unknown login method"))
        return await self._login({"msisdn": msisdn, "method": method, "secret": secret})

    async def login_id_card(self, msisdn: str) -> dict[str, Any]:
        """CUSTOMER_LOGIN with the ID card read now and the camera's face match."""
        self._require(Function.ID_LOGIN)
        reader = self.agent.devices.id_reader
        try:
            card = await reader.read()
        except DeviceError as exc:
            await self.agent.refresh_devices()
            raise FlowError(DEVICE_FAILED, details={"device": exc.reason}) from exc
        return await self._login(
            {
                "msisdn": msisdn,
                "method": "id_card",
                "id_number": card.id_number,
                "id_name": card.id_name,
                "reader_id": reader.reader_id,
                "face_match_score": card.face_match_score,
            }
        )

    async def _login(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.customer_token is not None:
            body["customer_token"] = self.customer_token
        answer = await self._ask(1001, body)
        token = answer.get("customer_token")
        self.customer_token = token if isinstance(token, str) else None
        return answer

    async def send_otp(self, msisdn: str) -> dict[str, Any]:
        """OTP_SEND (1002): state-changing, journaled, but only sent while the customer
        waits (a code arriving minutes later helps nobody)."""
        self._require(Function.ACCOUNT)
        return await self._interactive(1002, {"msisdn": msisdn})

    async def summary(self) -> dict[str, Any]:
        """ACCOUNT_SUMMARY (1010) of the logged-in customer."""
        self._require(Function.ACCOUNT)
        if self.customer_token is None:
            raise FlowError(NOT_LOGGED_IN)
        return await self._ask(1010, {"customer_token": self.customer_token})

    async def logout(self) -> None:
        """CUSTOMER_LOGOUT (1003); the token is forgotten whatever the answer."""
        token, self.customer_token = self.customer_token, None
        if token is None or self.agent.link is not Link.ONLINE:
            return  # tokens expire by themselves after 300 s idle
        with contextlib.suppress(FlowError):
            await self._interactive(1003, {"customer_token": token})

    async def _interactive(self, serv_type: int, body: dict[str, Any]) -> dict[str, Any]:
        entry = self.agent.journal_request(serv_type, body, replay=False)
        answer = await self.agent.send_entry(entry)
        if answer is None:
            current = self.agent.journal.entry(entry.serial)
            if current.state is State.PENDING:
                self.agent.journal.mark_final_failure(
                    entry.serial, State.ABANDONED, "", "no answer while the customer waited"
                )
            raise NoAnswer(NO_ANSWER)
        return self._body(answer)
