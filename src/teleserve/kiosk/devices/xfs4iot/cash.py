"""The cash acceptor over XFS4IoT ``CashAcceptor`` (with ``CashManagement`` and
``Storage`` on the same service).

A cash-in is ``CashInStart`` → ``CashIn`` … → ``CashInEnd`` (stack) or
``CashInRollback`` (return). One ``CashIn`` waits for the customer to insert notes, moves
the accepted ones to escrow, hands the others back (``InputRefuseEvent``) and completes
with what it took (``items``, not cumulative). The agent's ``escrow()`` is asked at any
moment, so after ``cash_in_start`` this driver keeps ``CashIn`` commands running one
after another in the background and adds up what they took. ``stack`` / ``rollback``
first cancel the waiting ``CashIn`` (``Common.Cancel``), then ask the device itself
(``GetCashInStatus``: the notes accepted in this cash-in) for what is in escrow, which is
also what a restarted agent gets.

Notes come as cash item names (``typeCNY100``…, chosen by the service); their value is
``CashManagement.GetBankNoteTypes``'s ``cashItem`` ``value`` in yuan, mapped to fen.
Only genuine notes (``fit`` / ``unfit``) count: a service must return suspect and
counterfeit notes rather than keep them in escrow.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from teleserve.core.logging import get_logger
from teleserve.kiosk.devices.base import (
    CashAcceptor,
    CashInState,
    CashInStatus,
    DeviceError,
    DeviceState,
    DeviceStatus,
    Notes,
)
from teleserve.kiosk.devices.xfs4iot.common import (
    OFFLINE,
    common_status,
    device_status,
    run,
    token,
)
from teleserve.kiosk.devices.xfs4iot.protocol import Completion, Request, XfsConnection

log = get_logger("teleserve.kiosk.xfs4iot")

GENUINE = ("fit", "unfit")
# Command error codes with a token of the agent's own; the rest fall back to the
# device's status (a jam, a full box) or the code itself.
_ERROR_REASONS = {
    "cashInActive": "cash_in_active",
    "noCashInActive": "no_cash_in",
    "tooManyItems": "box_full",
    "exchangeActive": "exchange_active",
    "safeDoorOpen": "safe_door_open",
}


class XfsCashAcceptor(CashAcceptor):
    def __init__(
        self,
        conn: XfsConnection,
        *,
        capacity_notes: int = 2000,
        currency: str = "CNY",
        cash_in_timeout_ms: int = 60_000,
    ) -> None:
        self.conn = conn
        self.currency = currency
        self.cash_in_timeout_ms = cash_in_timeout_ms
        self._capacity = capacity_notes  # until Storage.GetStorage tells
        self._note_values: dict[str, int] = {}  # cash item → fen
        self._escrow: Notes = {}  # what this cash-in's CashIn commands took
        self._open = False  # a cash-in this driver started and has not ended
        self._feeder: asyncio.Task[None] | None = None
        self._current: Request | None = None
        self._stopping = False
        self._box: DeviceStatus | None = None  # last storage verdict

    @property
    def capacity_notes(self) -> int:
        return self._capacity

    # -- status ------------------------------------------------------------------------
    async def status(self) -> DeviceStatus:
        payload = await common_status(self.conn)
        if payload is None:
            return OFFLINE
        base = device_status(payload)
        if base is not None:
            if base.state is DeviceState.FAULT and _jammed(payload):
                return DeviceStatus(DeviceState.FAULT, "jam")
            return base
        if _jammed(payload):
            return DeviceStatus(DeviceState.FAULT, "jam")
        # Storage is queried between cash-ins only: a service may queue it behind the
        # CashIn waiting for the customer.
        if not self._feeding:
            self._box = await self._storage_status()
        return self._box or DeviceStatus(DeviceState.OK)

    async def _storage_status(self) -> DeviceStatus | None:
        done = await run(self.conn, self.name, "Storage.GetStorage", timeout_ms=10_000)
        units = done.payload.get("storage") if done.ok else None
        if not isinstance(units, dict):
            return None
        capacity = count = 0
        worst = "ok"
        for unit in units.values():
            cash = unit.get("cash") if isinstance(unit, dict) else None
            status = cash.get("status") if isinstance(cash, dict) else None
            if not isinstance(status, dict):
                continue
            capacity += int(unit.get("capacity") or 0)
            count += int(status.get("count") or 0)
            level = status.get("replenishmentStatus")
            if level == "full" or (level == "high" and worst != "full"):
                worst = str(level)
        if capacity > 0:
            self._capacity = capacity
        if worst == "full" or (capacity > 0 and count >= capacity):
            return DeviceStatus(DeviceState.FAULT, "box_full")
        if worst == "high":
            return DeviceStatus(DeviceState.WARNING, "box_almost_full")
        return DeviceStatus(DeviceState.OK)

    # -- cash-in -------------------------------------------------------------------------
    async def cash_in_start(self) -> None:
        if self._open:
            raise DeviceError(self.name, "cash_in_active")
        status = await self.status()
        if not status.state.usable:
            raise DeviceError(self.name, status.detail or status.state.value)
        await self._load_note_types()
        done = await run(
            self.conn,
            self.name,
            "CashAcceptor.CashInStart",
            payload={"useRecycleUnits": False},
            timeout_ms=30_000,
        )
        if not done.ok:
            raise DeviceError(self.name, await self._reason(done))
        self._open, self._escrow, self._stopping = True, {}, False
        self._feeder = asyncio.create_task(self._feed(), name="xfs-cash-in")

    async def escrow(self) -> Notes:
        if self._open:
            return dict(self._escrow)
        status = await self.cash_in_status()
        return status.escrow

    async def stack(self) -> Notes:
        notes = await self._end("CashAcceptor.CashInEnd")
        self._box = None  # the box has more notes now: ask again
        return notes

    async def rollback(self) -> Notes:
        return await self._end("CashAcceptor.CashInRollback")

    async def cash_in_status(self) -> CashInStatus:
        if self._feeding:  # the device is busy feeding; this driver knows best
            return CashInStatus(CashInState.ACTIVE, dict(self._escrow))
        done = await run(self.conn, self.name, "CashAcceptor.GetCashInStatus", timeout_ms=10_000)
        if not done.ok:
            raise DeviceError(self.name, await self._reason(done))
        try:
            state = CashInState(str(done.payload.get("status")))
        except ValueError:
            state = CashInState.UNKNOWN
        escrow: Notes = {}
        if state is CashInState.ACTIVE:
            escrow = await self._notes(done.payload.get("noteNumberList"))
        return CashInStatus(state, escrow)

    async def _end(self, command: str) -> Notes:
        """Stop feeding, read the escrow from the device, then end the cash-in."""
        await self._stop_feeding()
        status = await self.cash_in_status()
        if status.state is not CashInState.ACTIVE:
            self._open = False
            raise DeviceError(self.name, "no_cash_in")
        done = await run(self.conn, self.name, command, timeout_ms=60_000)
        if not done.ok:
            # Still active (a jam while stacking): the notes stay in escrow and the
            # agent decides (CashInRollback, or recovery after a restart).
            raise DeviceError(self.name, await self._reason(done))
        self._open, self._escrow = False, {}
        return status.escrow

    # -- the background CashIn commands -----------------------------------------------------
    @property
    def _feeding(self) -> bool:
        return self._feeder is not None and not self._feeder.done()

    async def _feed(self) -> None:
        """``CashIn`` after ``CashIn`` until stopped or the device cannot go on."""
        while not self._stopping:
            req = self.conn.request(
                "CashAcceptor.CashIn",
                timeout_ms=self.cash_in_timeout_ms,
                on_event=self._on_event,
            )
            self._current = req
            try:
                await req.send()
                done = await req.wait()
            except Exception as exc:  # offline, rejected: status() reports it
                log.warning("xfs4iot.cash_in_stopped", error=str(exc))
                return
            finally:
                self._current = None
            items = await self._notes(done.payload.get("items"))
            for value, count in items.items():
                self._escrow[value] = self._escrow.get(value, 0) + count
            if done.ok or done.code == "timeOut" or done.error_code == "noItems":
                continue
            if done.code != "canceled":
                log.warning("xfs4iot.cash_in_failed", code=done.code, error=done.error_code)
            return

    def _on_event(self, name: str, payload: dict[str, Any]) -> None:
        if name in ("CashAcceptor.InputRefuseEvent", "CashManagement.NoteErrorEvent"):
            log.info("xfs4iot.notes_refused", message=name, reason=payload.get("reason"))

    async def _stop_feeding(self) -> None:
        feeder = self._feeder
        if feeder is None:
            return
        self._stopping = True
        # The feeder takes its request id before sending, so there is nothing to miss.
        while not feeder.done():
            if self._current is not None:
                await self.conn.cancel(self._current)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(feeder)
        self._feeder = None

    # -- notes ---------------------------------------------------------------------------------
    async def _load_note_types(self) -> None:
        done = await run(self.conn, self.name, "CashManagement.GetBankNoteTypes", timeout_ms=10_000)
        items = done.payload.get("items") if done.ok else None
        if not isinstance(items, dict):
            raise DeviceError(self.name, "no_note_types")
        values: dict[str, int] = {}
        for key, note in items.items():
            item = note.get("cashItem") if isinstance(note, dict) else None
            if not isinstance(item, dict) or item.get("currency") != self.currency:
                continue
            value = item.get("value")
            if isinstance(value, int | float) and value > 0:
                values[key] = round(value * 100)
        self._note_values = values

    async def _notes(self, counts: Any) -> Notes:
        """A ``StorageCashCountsClass`` (``{"unrecognized": n, item: {"fit": n, …}}``)
        → fen → count, genuine notes only."""
        if not isinstance(counts, dict):
            return {}
        entries = {k: v for k, v in counts.items() if k != "unrecognized" and isinstance(v, dict)}
        if any(k not in self._note_values for k in entries):
            await self._load_note_types()
        notes: Notes = {}
        for key, classified in entries.items():
            value = self._note_values.get(key)
            count = sum(int(classified.get(c) or 0) for c in GENUINE)
            if value is None:
                if count:
                    raise DeviceError(self.name, "unknown_note")
                continue
            if count:
                notes[value] = notes.get(value, 0) + count
        return notes

    async def _reason(self, done: Completion) -> str:
        known = _ERROR_REASONS.get(done.error_code or "")
        if known:
            return known
        status = await self.status()
        if not status.state.usable and status.detail:
            return status.detail
        return token(done.error_code or done.code)


def _jammed(payload: dict[str, Any]) -> bool:
    """A note jam shows as a position whose transport is inoperative or shutter jammed."""
    acceptor = payload.get("cashAcceptor")
    positions = acceptor.get("positions") if isinstance(acceptor, dict) else None
    for position in positions if isinstance(positions, list) else []:
        if isinstance(position, dict) and (
            position.get("transport") == "inoperative" or position.get("shutter") == "jammed"
        ):
            return True
    return False
