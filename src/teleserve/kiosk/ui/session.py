"""The customer at the screen: one at a time, so the UI keeps their state in the agent
process (no cookie). ``CustomerSession`` is what a flow has gathered so far, the
language, the one message to show next and the idle clock.

Ending a session (the customer pressed home, logged out, or walked away) gives the cash
in escrow back and logs the customer out; ``end_session`` does it for every route and
for the idle watchdog alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from teleserve.core.i18n import DEFAULT_LOCALE, _, translate
from teleserve.core.logging import get_logger
from teleserve.kiosk.flows import FlowError, PaymentOutcome

if TYPE_CHECKING:
    from teleserve.kiosk.agent import Agent

log = get_logger("teleserve.kiosk")

IDLE_ENDED = _("Your session ended because the screen was not touched for a while")
NOTES_RETURNED = _("Please take back your notes")


@dataclass(frozen=True, slots=True)
class Flash:
    """One message for the next screen: ``error`` (alert) or ``notice``."""

    kind: str
    text: Callable[[str], str]  # locale → text

    @classmethod
    def message(cls, kind: str, message_id: str, **params: object) -> Flash:
        return cls(kind, lambda locale: translate(message_id, locale, **params))

    @classmethod
    def flow_error(cls, exc: FlowError) -> Flash:
        return cls("error", exc.text)


class CustomerSession:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # One customer action at a time; the idle watchdog never ends a session while
        # an action runs (a payment waiting for its answer is not idleness).
        self.lock = asyncio.Lock()
        self.flash: Flash | None = None
        self.reset()

    def reset(self) -> None:
        self.locale = DEFAULT_LOCALE
        self.msisdn: str | None = None  # the number being paid for
        self.customer_name = ""  # its owner's masked name (MSISDN_CHECK)
        self.amount: int | None = None  # a card payment's amount (fen)
        self.outcome: PaymentOutcome | None = None  # the payment just made
        self.outcome_msisdn: str | None = None
        self.reprint_lines: list[str] | None = None
        self.escrow_total = 0
        self.last_activity = self._clock()

    def touch(self) -> None:
        self.last_activity = self._clock()

    def idle_for(self) -> float:
        return self._clock() - self.last_activity

    def pop_flash(self) -> Flash | None:
        flash, self.flash = self.flash, None
        return flash

    def has_state(self, agent: Agent | None) -> bool:
        """Anything a walk-away customer would leave behind."""
        open_cash = agent is not None and agent.journal.cash_in() is not None
        logged_in = agent is not None and agent.customer.customer_token is not None
        return (
            open_cash
            or logged_in
            or self.locale != DEFAULT_LOCALE
            or self.msisdn is not None
            or self.outcome is not None
            or self.reprint_lines is not None
        )


async def end_session(session: CustomerSession, agent: Agent | None, notice: Flash | None) -> None:
    """Return the escrow if a cash-in is open, log out, forget the flow; the caller holds
    ``session.lock``. ``notice`` is shown on the home screen (in the default language:
    the next customer reads it)."""
    returned = False
    if agent is not None:
        flows = agent.customer
        if agent.journal.cash_in() is not None:
            try:
                notes = await flows.cancel_cash()
                returned = bool(notes)
            except FlowError as exc:
                # The device failed to give the notes back: the agent alarmed the staff
                # (refresh_devices); the screen says to ask them.
                log.warning("kiosk.ui.cash_return_failed", details=exc.details)
                notice = Flash.flow_error(exc)
        with contextlib.suppress(FlowError):
            await flows.logout()
    session.reset()
    if returned:
        notice = _with_notes_returned(notice)
    session.flash = notice


def _with_notes_returned(notice: Flash | None) -> Flash:
    if notice is None:
        return Flash.message("notice", NOTES_RETURNED)
    first = notice.text
    return Flash(notice.kind, lambda locale: f"{first(locale)} {translate(NOTES_RETURNED, locale)}")
