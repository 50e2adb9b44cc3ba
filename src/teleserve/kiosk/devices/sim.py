"""Simulated devices (``--devices sim``, demo mode only: the server refuses a terminal
reporting ``device_mode`` ``sim`` in production).

Each driver behaves like the hardware it stands for, and exposes a few control methods
that tests and the demo panel use to play the customer or the fault: insert notes, jam,
box full, paper low / out, card declined, present an ID card, open the door. ``SimPanel``
gathers them behind one small object (the HTTP demo panel comes with the UI slice).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from teleserve.kiosk.devices.base import (
    CardAuthorisation,
    CardDeclined,
    CardModule,
    CashAcceptor,
    CashInState,
    CashInStatus,
    DeviceError,
    Devices,
    DeviceState,
    DeviceStatus,
    IdCardReader,
    IdRead,
    Notes,
    Paper,
    ReceiptPrinter,
    Sensors,
)

# PROTOCOL.md's default accepted notes (fen).
CNY_NOTES = (100, 500, 1000, 2000, 5000, 10000)


class _SimFaults:
    """Generic fault and offline switches every sim device has."""

    name: str

    def __init__(self) -> None:
        self.fault_reason: str | None = None
        self.offline = False

    def set_fault(self, reason: str | None) -> None:
        """A hardware fault (``reason``), or ``None`` to clear it."""
        self.fault_reason = reason

    def set_offline(self, offline: bool = True) -> None:
        self.offline = offline

    def _base_status(self) -> DeviceStatus | None:
        if self.offline:
            return DeviceStatus(DeviceState.OFFLINE, "offline")
        if self.fault_reason is not None:
            return DeviceStatus(DeviceState.FAULT, self.fault_reason)
        return None

    def _require_usable(self) -> None:
        if self.offline:
            raise DeviceError(self.name, "offline")
        if self.fault_reason is not None:
            raise DeviceError(self.name, self.fault_reason)


class SimCashAcceptor(_SimFaults, CashAcceptor):
    def __init__(self, capacity_notes: int = 2000, accepted: Iterable[int] = CNY_NOTES) -> None:
        super().__init__()
        self._capacity = capacity_notes
        self.accepted = frozenset(accepted)
        self.state = CashInState.OK
        self._escrow: Notes = {}
        self.box: Notes = {}  # what is physically in the cash box
        self.refused: list[int] = []  # notes handed straight back (unknown, no cash-in…)
        self.returned: list[Notes] = []  # escrows given back to the customer
        self.jammed = False
        self._stack_fault: str | None = None

    # -- controls ------------------------------------------------------------------
    def insert(self, value: int, count: int = 1) -> bool:
        """The customer feeds ``count`` notes of ``value`` fen. False: refused (no
        cash-in open, unknown denomination, jam, box full) and handed back."""
        usable = not (self.offline or self.fault_reason or self.jammed)
        room = self._capacity - self.box_count - sum(self._escrow.values())
        if (
            not usable
            or self.state is not CashInState.ACTIVE
            or value not in self.accepted
            or count > room
        ):
            self.refused.extend([value] * count)
            return False
        self._escrow[value] = self._escrow.get(value, 0) + count
        return True

    def jam(self) -> None:
        self.jammed = True

    def clear_jam(self) -> None:
        self.jammed = False

    def fill_box(self) -> None:
        """Box full: the box holds as many notes as it can."""
        missing = self._capacity - self.box_count
        if missing > 0:
            self.box[100] = self.box.get(100, 0) + missing

    def empty_box(self) -> Notes:
        """A cash collection: the box is taken out and an empty one put in."""
        taken, self.box = self.box, {}
        return taken

    def fail_next_stack(self, reason: str = "jam") -> None:
        """The next stack fails and jams the transport (the notes stay in escrow)."""
        self._stack_fault = reason

    # -- the driver ----------------------------------------------------------------------
    @property
    def box_count(self) -> int:
        return sum(self.box.values())

    @property
    def capacity_notes(self) -> int:
        return self._capacity

    async def status(self) -> DeviceStatus:
        base = self._base_status()
        if base is not None:
            return base
        if self.jammed:
            return DeviceStatus(DeviceState.FAULT, "jam")
        if self.box_count >= self._capacity:
            return DeviceStatus(DeviceState.FAULT, "box_full")
        if self.box_count >= self._capacity * 9 // 10:
            return DeviceStatus(DeviceState.WARNING, "box_almost_full")
        return DeviceStatus(DeviceState.OK)

    async def cash_in_start(self) -> None:
        self._require_usable()
        if self.jammed:
            raise DeviceError(self.name, "jam")
        if self.box_count >= self._capacity:
            raise DeviceError(self.name, "box_full")
        if self.state is CashInState.ACTIVE:
            raise DeviceError(self.name, "cash_in_active")
        self.state = CashInState.ACTIVE
        self._escrow = {}

    async def escrow(self) -> Notes:
        return dict(self._escrow)

    async def stack(self) -> Notes:
        if self.state is not CashInState.ACTIVE:
            raise DeviceError(self.name, "no_cash_in")
        if self._stack_fault is not None:
            reason, self._stack_fault = self._stack_fault, None
            self.jammed = True
            raise DeviceError(self.name, reason)
        self._require_usable()
        if self.jammed:
            raise DeviceError(self.name, "jam")
        stacked, self._escrow = self._escrow, {}
        for value, count in stacked.items():
            self.box[value] = self.box.get(value, 0) + count
        self.state = CashInState.OK
        return stacked

    async def rollback(self) -> Notes:
        if self.state is not CashInState.ACTIVE:
            raise DeviceError(self.name, "no_cash_in")
        returned, self._escrow = self._escrow, {}
        self.returned.append(returned)
        self.state = CashInState.ROLLBACK
        return returned

    async def cash_in_status(self) -> CashInStatus:
        return CashInStatus(self.state, dict(self._escrow))


class SimCardModule(_SimFaults, CardModule):
    """A card reader + PIN pad with a simulated acquirer. The card number stays inside
    this object (a private attribute, never returned, never in ``repr``): only the
    ``CardAuthorisation`` fields leave it."""

    MERCHANT_ID = "898440158120001"
    ACQ_TERMINAL_ID = "TS000001"

    def __init__(self) -> None:
        super().__init__()
        self.__pan: str | None = None
        self.decline_reason: str | None = None
        self._trace = 0
        self.batch_no = "000001"
        # The acquirer's view, for tests: rrn → (authorisation, amount, voided).
        self.acquirer: dict[str, tuple[CardAuthorisation, int, bool]] = {}

    def __repr__(self) -> str:
        return f"SimCardModule(card_present={self.__pan is not None})"

    # -- controls ------------------------------------------------------------------
    def insert_card(self, pan: str) -> None:
        if not (pan.isdecimal() and 12 <= len(pan) <= 19):
            raise ValueError("a card number has 12-19 digits")
        self.__pan = pan

    def decline(self, reason: str | None = "declined") -> None:
        """The acquirer declines every authorisation (``None``: approves again)."""
        self.decline_reason = reason

    # -- the driver ----------------------------------------------------------------------
    async def status(self) -> DeviceStatus:
        return self._base_status() or DeviceStatus(DeviceState.OK)

    async def authorise(self, amount: int) -> CardAuthorisation | CardDeclined:
        self._require_usable()
        pan, self.__pan = self.__pan, None  # the card is ejected whatever the outcome
        if pan is None:
            raise DeviceError(self.name, "no_card")
        if amount <= 0:
            return CardDeclined("amount_invalid")
        if self.decline_reason is not None:
            return CardDeclined(self.decline_reason)
        self._trace += 1
        auth = CardAuthorisation(
            bin=pan[:6],
            last4=pan[-4:],
            auth_code=f"{secrets.randbelow(10**6):06d}",
            rrn=f"{secrets.randbelow(10**12):012d}",
            merchant_id=self.MERCHANT_ID,
            acq_terminal_id=self.ACQ_TERMINAL_ID,
            trace_no=f"{self._trace:06d}",
            batch_no=self.batch_no,
        )
        self.acquirer[auth.rrn] = (auth, amount, False)
        return auth

    async def void(self, authorisation: CardAuthorisation) -> bool:
        self._require_usable()
        found = self.acquirer.get(authorisation.rrn)
        if found is None or found[0] != authorisation:
            return False
        self.acquirer[authorisation.rrn] = (found[0], found[1], True)
        return True


class SimPrinter(_SimFaults, ReceiptPrinter):
    def __init__(self) -> None:
        super().__init__()
        self.level = Paper.OK
        self.printed: list[list[str]] = []

    def set_paper(self, level: Paper | str) -> None:
        self.level = Paper(level)

    async def status(self) -> DeviceStatus:
        base = self._base_status()
        if base is not None:
            return base
        if self.level is Paper.OUT:
            return DeviceStatus(DeviceState.FAULT, "paper_out")
        if self.level is Paper.LOW:
            return DeviceStatus(DeviceState.WARNING, "paper_low")
        return DeviceStatus(DeviceState.OK)

    async def paper(self) -> Paper:
        return self.level

    async def print_receipt(self, lines: list[str]) -> None:
        self._require_usable()
        if self.level is Paper.OUT:
            raise DeviceError(self.name, "paper_out")
        self.printed.append(list(lines))


class SimIdReader(_SimFaults, IdCardReader):
    def __init__(self, reader_id: str = "SIM-IDR-1") -> None:
        super().__init__()
        self._reader_id = reader_id
        self._card: IdRead | None = None

    def present(self, id_number: str, id_name: str, face_match_score: int = 95) -> None:
        self._card = IdRead(id_number, id_name, face_match_score)

    @property
    def reader_id(self) -> str:
        return self._reader_id

    async def status(self) -> DeviceStatus:
        return self._base_status() or DeviceStatus(DeviceState.OK)

    async def read(self) -> IdRead:
        self._require_usable()
        card, self._card = self._card, None
        if card is None:
            raise DeviceError(self.name, "no_card")
        return card


class SimSensors(_SimFaults, Sensors):
    def __init__(self) -> None:
        super().__init__()
        self.door_open = False
        self.tamper = False
        self.temperature_c = 25

    async def status(self) -> DeviceStatus:
        base = self._base_status()
        if base is not None:
            return base
        if self.tamper:
            return DeviceStatus(DeviceState.FAULT, "tamper")
        if self.door_open:
            return DeviceStatus(DeviceState.WARNING, "door_open")
        return DeviceStatus(DeviceState.OK)

    async def readings(self) -> dict[str, str]:
        return {
            "door": "open" if self.door_open else "closed",
            "tamper": "yes" if self.tamper else "no",
            "temperature_c": str(self.temperature_c),
        }


class SimPanel:
    """The demo panel's control object: every sim device and the few things a tester
    or a presenter does to them."""

    def __init__(self, *, capacity_notes: int = 2000, reader_id: str = "SIM-IDR-1") -> None:
        self.cash = SimCashAcceptor(capacity_notes)
        self.card = SimCardModule()
        self.printer = SimPrinter()
        self.id_reader = SimIdReader(reader_id)
        self.sensors = SimSensors()

    @property
    def devices(self) -> Devices:
        return Devices(self.cash, self.card, self.printer, self.id_reader, self.sensors)

    def insert_notes(self, value: int, count: int = 1) -> bool:
        return self.cash.insert(value, count)

    def jam(self) -> None:
        self.cash.jam()

    def clear_jam(self) -> None:
        self.cash.clear_jam()

    def box_full(self) -> None:
        self.cash.fill_box()

    def paper(self, level: Paper | str) -> None:
        self.printer.set_paper(level)

    def card_declined(self, reason: str | None = "declined") -> None:
        self.card.decline(reason)

    def insert_card(self, pan: str) -> None:
        self.card.insert_card(pan)

    def present_id(self, id_number: str, id_name: str, face_match_score: int = 95) -> None:
        self.id_reader.present(id_number, id_name, face_match_score)

    def door(self, open_: bool) -> None:
        self.sensors.door_open = open_
