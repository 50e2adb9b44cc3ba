"""The device interfaces the agent drives (DESIGN.md §8): cash acceptor with escrow, card
module (card reader + PIN pad + acquirer link), receipt printer, ID-card reader, sensors.

Drivers implement these: ``sim`` (demo mode, controllable from tests and the demo panel)
and ``xfs4iot`` (CEN XFS4IoT over WebSocket). The cash-in vocabulary follows XFS4IoT
(``CashInStart`` → ``CashIn`` → ``CashInEnd`` / ``CashInRollback``, ``GetCashInStatus``),
so that driver maps one to one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Notes by denomination (fen) → count.
Notes = dict[int, int]


def notes_total(notes: Mapping[int, int]) -> int:
    return sum(value * count for value, count in notes.items())


def notes_list(notes: Mapping[int, int]) -> list[dict[str, int]]:
    """PROTOCOL.md's ``[{value, count}]``, by denomination, without empty entries."""
    return [{"value": v, "count": c} for v, c in sorted(notes.items()) if c > 0]


class DeviceState(StrEnum):
    """PROTOCOL.md's device states (STATUS_REPORT ``devices.*.state``)."""

    OK = "ok"
    WARNING = "warning"
    FAULT = "fault"
    OFFLINE = "offline"

    @property
    def usable(self) -> bool:
        return self in (DeviceState.OK, DeviceState.WARNING)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    state: DeviceState
    # A stable token (``jam``, ``box_full``, ``paper_out``…) the agent turns into a
    # message in both languages; also the 9001 ``detail``.
    detail: str | None = None

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state.value}
        if self.detail:
            out["detail"] = self.detail
        return out


OK = DeviceStatus(DeviceState.OK)


class DeviceError(Exception):
    """A device could not do what was asked; ``reason`` is a token as in
    ``DeviceStatus.detail``."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"{device}: {reason}")
        self.device = device
        self.reason = reason


class Device(ABC):
    name: str

    @abstractmethod
    async def status(self) -> DeviceStatus: ...


# -- cash acceptor --------------------------------------------------------------------


class CashInState(StrEnum):
    """XFS4IoT ``GetCashInStatus``: what became of the last cash-in."""

    OK = "ok"  # ended: the notes were stacked (CashInEnd)
    ROLLBACK = "rollback"  # ended: the notes went back to the customer
    ACTIVE = "active"  # in progress: notes may be in escrow
    RETRACT = "retract"  # the notes were retracted into the device
    UNKNOWN = "unknown"
    RESET = "reset"  # the device was reset: the outcome is unknown


@dataclass(frozen=True, slots=True)
class CashInStatus:
    state: CashInState
    escrow: Notes


class CashAcceptor(Device):
    name = "cash_acceptor"

    @property
    @abstractmethod
    def capacity_notes(self) -> int:
        """How many notes the cash box holds."""

    @abstractmethod
    async def cash_in_start(self) -> None:
        """Open the shutter: notes inserted from now on go to escrow."""

    @abstractmethod
    async def escrow(self) -> Notes:
        """The notes in escrow now (refused notes were handed back already)."""

    @abstractmethod
    async def stack(self) -> Notes:
        """Move the escrow into the cash box (CashInEnd); the notes stacked."""

    @abstractmethod
    async def rollback(self) -> Notes:
        """Give the escrow back to the customer (CashInRollback); the notes returned."""

    @abstractmethod
    async def cash_in_status(self) -> CashInStatus:
        """After a restart: what became of the last cash-in."""


# -- card module --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardAuthorisation:
    """What leaves the card module after an approval: no PAN, track data or PIN, ever
    (PROTOCOL.md, "Card data")."""

    bin: str
    last4: str
    auth_code: str
    rrn: str
    merchant_id: str
    acq_terminal_id: str
    trace_no: str
    batch_no: str

    def as_body(self) -> dict[str, str]:
        return {
            "bin": self.bin,
            "last4": self.last4,
            "auth_code": self.auth_code,
            "rrn": self.rrn,
            "merchant_id": self.merchant_id,
            "acq_terminal_id": self.acq_terminal_id,
            "trace_no": self.trace_no,
            "batch_no": self.batch_no,
        }

    @classmethod
    def from_body(cls, card: Mapping[str, Any]) -> CardAuthorisation:
        return cls(**{name: str(card[name]) for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class CardDeclined:
    reason: str  # acquirer's reason token: declined, insufficient_funds, …


class CardModule(Device):
    name = "card_module"

    @abstractmethod
    async def authorise(self, amount: int) -> CardAuthorisation | CardDeclined:
        """Read the customer's card, take the PIN and authorise ``amount`` fen with the
        acquirer. Raises ``DeviceError`` when no card could be read."""

    @abstractmethod
    async def void(self, authorisation: CardAuthorisation) -> bool:
        """Reverse an authorisation with the acquirer (a REVERSAL answered ``voided``,
        or a 2002 the server refused). True when the acquirer confirmed."""


# -- receipt printer ------------------------------------------------------------------


class Paper(StrEnum):
    OK = "ok"
    LOW = "low"
    OUT = "out"


class ReceiptPrinter(Device):
    name = "receipt_printer"

    @abstractmethod
    async def paper(self) -> Paper: ...

    @abstractmethod
    async def print_receipt(self, lines: list[str]) -> None:
        """Print and cut; raises ``DeviceError`` (``paper_out``…)."""


# -- ID-card reader -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdRead:
    """An ID card read by the certified reader, with the face match the kiosk camera
    made against the card's photo (0–100)."""

    id_number: str
    id_name: str
    face_match_score: int


class IdCardReader(Device):
    name = "id_card_reader"

    @property
    @abstractmethod
    def reader_id(self) -> str:
        """The reader registered to this terminal (CUSTOMER_LOGIN ``reader_id``)."""

    @abstractmethod
    async def read(self) -> IdRead:
        """Read the presented card; raises ``DeviceError`` (``no_card``…)."""


# -- sensors --------------------------------------------------------------------------


class Sensors(Device):
    name = "sensors"

    @abstractmethod
    async def readings(self) -> dict[str, str]:
        """Door, tamper, temperature…: name → value, for the status report."""


@dataclass(frozen=True, slots=True)
class Devices:
    cash: CashAcceptor
    card: CardModule
    printer: ReceiptPrinter
    id_reader: IdCardReader
    sensors: Sensors

    def all(self) -> tuple[Device, ...]:
        return (self.cash, self.card, self.printer, self.id_reader, self.sensors)
