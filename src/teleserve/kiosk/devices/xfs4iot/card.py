"""The card module over XFS4IoT ``CardReader``, with the authorisation behind an
``Acquirer``.

XFS4IoT drives the card reader; it has no acquirer. In a real kiosk the authorisation is
the acquirer's: its EMV kernel and PIN handling (certified, supplied with its terminal
SDK) and its host link. The boundary here: this driver reads the card
(``CardReader.ReadRawData``, track 2), hands the card number to an ``Acquirer`` with the
amount, ejects the card (``CardReader.Move`` to ``exit``) whatever the outcome, and
returns only what ``CardAuthorisation`` carries (bin, last4, references). The card
number lives in one local variable of ``authorise``: never stored, logged, or raised.

Acquirers: ``SimAcquirer`` (the sim driver's simulated acquirer, for tests and demos;
the agent then reports ``device_mode`` ``sim``), ``NoAcquirer`` (no acquirer link
installed: card payments are disabled, the reader is still monitored). A certified
acquirer integration implements ``Acquirer``.
"""

from __future__ import annotations

import base64
import binascii
import re
from abc import ABC, abstractmethod
from typing import Any

from teleserve.core.logging import get_logger
from teleserve.kiosk.devices.base import (
    CardAuthorisation,
    CardDeclined,
    CardModule,
    DeviceError,
    DeviceState,
    DeviceStatus,
)
from teleserve.kiosk.devices.sim import SimCardModule
from teleserve.kiosk.devices.xfs4iot.common import (
    OFFLINE,
    common_status,
    device_status,
    run,
    token,
)
from teleserve.kiosk.devices.xfs4iot.protocol import XfsConnection

log = get_logger("teleserve.kiosk.xfs4iot")

# Track 2 (ISO 7813): start sentinel ';', PAN (12–19 digits), separator '=', …
_TRACK2_PAN = re.compile(r";?(\d{12,19})=")
_READ_ERRORS = {
    "noMedia": "no_card",
    "invalidMedia": "invalid_card",
    "cardTooShort": "invalid_card",
    "cardTooLong": "invalid_card",
    "mediaJam": "card_jam",
    "shutterFail": "card_reader_shutter",
}


class Acquirer(ABC):
    """The authorisation side of the card module (EMV kernel + PIN + acquirer host)."""

    @abstractmethod
    async def status(self) -> DeviceStatus: ...

    @abstractmethod
    async def authorise(self, pan: str, amount: int) -> CardAuthorisation | CardDeclined:
        """Authorise ``amount`` fen on the card ``pan``; raises ``DeviceError``."""

    @abstractmethod
    async def void(self, authorisation: CardAuthorisation) -> bool: ...


class SimAcquirer(Acquirer):
    """The sim driver's simulated acquirer (``SimCardModule``): the same approvals,
    declines (``decline()``) and voids, fed with the card the XFS4IoT reader read."""

    def __init__(self, module: SimCardModule | None = None) -> None:
        self.module = module or SimCardModule()

    async def status(self) -> DeviceStatus:
        return await self.module.status()

    async def authorise(self, pan: str, amount: int) -> CardAuthorisation | CardDeclined:
        self.module.insert_card(pan)
        return await self.module.authorise(amount)

    async def void(self, authorisation: CardAuthorisation) -> bool:
        return await self.module.void(authorisation)


class NoAcquirer(Acquirer):
    """No acquirer link on this kiosk: card payments stay disabled."""

    async def status(self) -> DeviceStatus:
        return DeviceStatus(DeviceState.FAULT, "no_acquirer")

    async def authorise(self, pan: str, amount: int) -> CardAuthorisation | CardDeclined:
        raise DeviceError("card_module", "no_acquirer")

    async def void(self, authorisation: CardAuthorisation) -> bool:
        return False


class XfsCardModule(CardModule):
    def __init__(
        self, conn: XfsConnection, acquirer: Acquirer, *, read_timeout_ms: int = 30_000
    ) -> None:
        self.conn = conn
        self.acquirer = acquirer
        self.read_timeout_ms = read_timeout_ms

    def __repr__(self) -> str:
        return f"XfsCardModule({self.conn.uri!r}, {self.acquirer.__class__.__name__})"

    async def status(self) -> DeviceStatus:
        payload = await common_status(self.conn)
        if payload is None:
            return OFFLINE
        base = device_status(payload)
        if base is not None:
            return base
        reader = payload.get("cardReader")
        if isinstance(reader, dict) and reader.get("media") == "jammed":
            return DeviceStatus(DeviceState.FAULT, "card_jam")
        return await self.acquirer.status()

    async def authorise(self, amount: int) -> CardAuthorisation | CardDeclined:
        if amount <= 0:
            return CardDeclined("amount_invalid")
        pan = await self._read_pan()
        try:
            return await self.acquirer.authorise(pan, amount)
        finally:
            del pan
            await self._eject()

    async def void(self, authorisation: CardAuthorisation) -> bool:
        return await self.acquirer.void(authorisation)

    async def _read_pan(self) -> str:
        done = await run(
            self.conn,
            self.name,
            "CardReader.ReadRawData",
            payload={"track1": False, "track2": True, "track3": False, "chip": False},
            timeout_ms=self.read_timeout_ms,
        )
        if not done.ok:
            if done.code in ("timeOut", "canceled"):
                raise DeviceError(self.name, "no_card")
            await self._eject()
            reason = _READ_ERRORS.get(done.error_code or "") or token(done.error_code or done.code)
            raise DeviceError(self.name, reason)
        pan = _pan(done.payload.get("track2"))
        if pan is None:
            await self._eject()
            raise DeviceError(self.name, "invalid_card")
        return pan

    async def _eject(self) -> None:
        try:
            done = await run(
                self.conn, self.name, "CardReader.Move", payload={"to": "exit"}, timeout_ms=30_000
            )
        except DeviceError as exc:
            log.warning("xfs4iot.card_eject_failed", reason=exc.reason)
            return
        if not done.ok and done.error_code != "noMedia":
            log.warning("xfs4iot.card_eject_failed", code=done.code, error=done.error_code)


def _pan(track: Any) -> str | None:
    """The card number on a ``ReadRawData`` track 2 (``{"status", "data": base64}``)."""
    if not isinstance(track, dict) or track.get("status") != "ok":
        return None
    try:
        text = base64.b64decode(str(track.get("data") or ""), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    match = _TRACK2_PAN.match(text)
    return match.group(1) if match else None
