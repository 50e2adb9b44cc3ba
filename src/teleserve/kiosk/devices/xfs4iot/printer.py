"""The receipt printer over XFS4IoT ``Printer``: ``Printer.PrintRaw`` of the receipt
lines (text in the printer's code page, one line feed each), then ``Printer.ControlMedia``
to cut and eject. Paper comes from ``Common.Status`` (``printer.paper.upper``).

PrintRaw sends device-dependent bytes: receipt printers in Chinese kiosks take GB 18030
text, the default here. A printer that wants something else (or forms, through
``Printer.PrintForm``) needs its own ``encoding`` or a vendor form set.
"""

from __future__ import annotations

import base64
from typing import Any

from teleserve.kiosk.devices.base import (
    DeviceError,
    DeviceState,
    DeviceStatus,
    Paper,
    ReceiptPrinter,
)
from teleserve.kiosk.devices.xfs4iot.common import (
    OFFLINE,
    common_status,
    device_status,
    run,
    token,
)
from teleserve.kiosk.devices.xfs4iot.protocol import XfsConnection

_PAPER = {"full": Paper.OK, "low": Paper.LOW, "out": Paper.OUT, "jammed": Paper.OUT}
_ERROR_REASONS = {"paperOut": "paper_out", "paperJammed": "paper_jam", "mediaJammed": "paper_jam"}


class XfsPrinter(ReceiptPrinter):
    def __init__(self, conn: XfsConnection, *, encoding: str = "gb18030") -> None:
        self.conn = conn
        self.encoding = encoding

    async def status(self) -> DeviceStatus:
        payload = await common_status(self.conn)
        if payload is None:
            return OFFLINE
        base = device_status(payload)
        if base is not None:
            return base
        supply = _paper_supply(payload)
        if supply == "jammed" or _printer(payload).get("media") == "jammed":
            return DeviceStatus(DeviceState.FAULT, "paper_jam")
        level = _PAPER.get(supply or "", Paper.OK)
        if level is Paper.OUT:
            return DeviceStatus(DeviceState.FAULT, "paper_out")
        if level is Paper.LOW:
            return DeviceStatus(DeviceState.WARNING, "paper_low")
        return DeviceStatus(DeviceState.OK)

    async def paper(self) -> Paper:
        payload = await common_status(self.conn)
        if payload is None:
            raise DeviceError(self.name, "offline")
        # "unknown" / "notSupported": a printer that cannot tell is taken at its word
        # that it prints; a print that fails says so.
        return _PAPER.get(_paper_supply(payload) or "", Paper.OK)

    async def print_receipt(self, lines: list[str]) -> None:
        status = await self.status()
        if not status.state.usable:
            raise DeviceError(self.name, status.detail or status.state.value)
        text = "".join(line + "\n" for line in lines)
        try:
            data = text.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise DeviceError(self.name, "unprintable") from exc
        done = await run(
            self.conn,
            self.name,
            "Printer.PrintRaw",
            payload={"inputData": "no", "data": base64.b64encode(data).decode("ascii")},
            timeout_ms=30_000,
        )
        if done.ok:
            done = await run(
                self.conn,
                self.name,
                "Printer.ControlMedia",
                payload={"mediaControl": {"cut": True, "eject": True}},
                timeout_ms=30_000,
            )
        if not done.ok:
            reason = _ERROR_REASONS.get(done.error_code or "")
            if reason is None:
                after = await self.status()
                reason = after.detail if not after.state.usable and after.detail else None
            raise DeviceError(self.name, reason or token(done.error_code or done.code))


def _printer(payload: dict[str, Any]) -> dict[str, Any]:
    printer = payload.get("printer")
    return printer if isinstance(printer, dict) else {}


def _paper_supply(payload: dict[str, Any]) -> str | None:
    paper = _printer(payload).get("paper")
    upper = paper.get("upper") if isinstance(paper, dict) else None
    return upper if isinstance(upper, str) else None
