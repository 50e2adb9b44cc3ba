"""The kiosk agent: start-up and recovery, the journal's delivery, status reports,
alarms, remote commands, cash collection and the daily journal upload.

Start-up (DESIGN.md §8): ask the cash acceptor what became of its last cash-in and
settle the journal with it → connect and sign on (with backoff, for ever) → replay the
journal → STATUS_REPORT → in service. Then one service loop does the periodic work —
resend what is pending, report status, ask how pending payments ended, upload the
journal once a day — while the customer flows (``flows.CustomerFlows``) run beside it,
sharing the business channel one request at a time.

Every state-changing request goes through ``send_entry``: journaled first, sent with
its own serial and bytes, settled by its answer (PROTOCOL.md, "Serial numbers"):
``00000`` / ``2xxxx`` / ``3xxxx`` are final; ``10003`` raises an alarm and the entry is
never sent again; a ``1xxxx`` that resending cannot change rejects it; ``9xxxx`` and a
missing answer leave it pending, to be resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from teleserve.core.i18n import _, translate
from teleserve.core.logging import get_logger
from teleserve.gateway.body import encode_body
from teleserve.gateway.catalog import SERV_TYPES, Channel
from teleserve.gateway.errors import (
    INVALID_FIELDS,
    MALFORMED,
    OUT_OF_SERVICE,
    SERIAL_CONFLICT,
    UNKNOWN_SERV_TYPE,
)
from teleserve.kiosk.availability import Availability, Function, Link, evaluate
from teleserve.kiosk.client import (
    Answer,
    BusinessChannel,
    ManagementChannel,
    ProtocolFault,
    TerminalRefused,
    TransportError,
    TspClock,
)
from teleserve.kiosk.config import KioskConfig
from teleserve.kiosk.devices.base import (
    CardAuthorisation,
    CashInState,
    DeviceError,
    Devices,
    DeviceState,
    DeviceStatus,
    notes_list,
)
from teleserve.kiosk.journal import Entry, Journal, State

log = get_logger("teleserve.kiosk")

# The 1xxxx answers a resend cannot change: the server recorded nothing, for good.
UNCHANGEABLE = frozenset({MALFORMED, UNKNOWN_SERV_TYPE, INVALID_FIELDS, OUT_OF_SERVICE})
COMMAND_TYPES = frozenset({"restart", "out_of_service", "in_service", "reload_config"})

ALARM_MESSAGES = {
    "device_fault": _("A device reports a fault"),
    "device_offline": _("A device is offline"),
    "serial_conflict": _("The server holds this serial with another request; not reissued"),
    "request_rejected": _("The server refused a journaled request; it will not be resent"),
    "cash_in_uncertain": _("The outcome of a cash-in is unknown after a restart"),
    "card_void_failed": _("A card authorisation could not be voided"),
}


def is_final(err_number: str) -> bool:
    """An answer the server records (PROTOCOL.md): success or a business error."""
    return err_number == "00000" or err_number[:1] in ("2", "3")


class Agent:
    def __init__(
        self,
        config: KioskConfig,
        devices: Devices,
        journal: Journal,
        *,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.devices = devices
        self.journal = journal
        self.clock = TspClock()
        self.business = BusinessChannel(config, journal, self.clock)
        self.management = ManagementChannel(config, self.clock)
        self.on_restart = on_restart
        self.statuses: dict[str, DeviceStatus] = {}
        # Out of service by remote command, or because the server answered 10009.
        self.out_of_service = False
        self.ready = False  # replayed and reported since the last sign-on
        self.config_version = 0
        self.last_report: dict[str, Any] | None = None
        self._alarmed: dict[str, str | None] = {}
        self._sending: set[int] = set()
        self._wake = asyncio.Event()
        self._report_due = True
        self._next_report = 0.0
        self._next_txn_poll = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self._tz = ZoneInfo(config.timezone)
        if journal.cash_box_id is None:
            # The first box: named after the terminal until a collection names the next.
            journal.set_cash_box(f"{config.terminal_id}-BOX1")

        from teleserve.kiosk.flows import CustomerFlows

        self.customer = CustomerFlows(self)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Recover local state, then connect and serve in the background."""
        await self.recover_cash()
        await self.refresh_devices()
        self._tasks = [
            asyncio.create_task(self.business.run(self._on_connected), name="kiosk-business"),
            asyncio.create_task(self._service_loop(), name="kiosk-service"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # gather, not a suppress(CancelledError) per task: a cancellation of stop()
        # itself must still propagate.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.business.sign_off()

    async def _on_connected(self) -> None:
        self.ready = False
        self._report_due = True
        self._wake.set()

    def wake(self) -> None:
        """Run the service loop now (new journal entries, a reconnection)."""
        self._wake.set()

    # -- state for the screen ----------------------------------------------------------
    @property
    def link(self) -> Link:
        if self.business.refused:
            return Link.REFUSED
        if not self.business.connected or not self.ready:
            return Link.OFFLINE
        if self.out_of_service:
            return Link.OUT_OF_SERVICE
        return Link.ONLINE

    def functions(self) -> dict[Function, Availability]:
        return evaluate(self.statuses, self.link)

    def business_date(self, at_ms: int | None = None) -> str:
        moment = self.clock.now_ms() if at_ms is None else at_ms
        return datetime.fromtimestamp(moment / 1000, self._tz).date().isoformat()

    # -- recovery --------------------------------------------------------------------------
    async def recover_cash(self) -> None:
        """Settle the journal with what the cash acceptor says of its last cash-in.

        - a payment journaled but not yet stacked: ``active`` (notes still in escrow) →
          stack them now, the customer had confirmed; ``ok`` → they were stacked before
          the crash; ``rollback`` → they went back to the customer, the entry is
          cancelled (never sent); anything else (``retract``, ``unknown``, ``reset``) →
          sent, with an alarm: the customer confirmed and the notes did not come back,
          so a difference shows at the next collection instead of the customer losing
          the money;
        - a cash-in the customer never confirmed → the escrow goes back to them.
        """
        cash = self.devices.cash
        try:
            status = await cash.cash_in_status()
        except DeviceError as exc:
            log.warning("kiosk.cash_in_status_failed", reason=exc.reason)
            return
        for entry in self.journal.entries(State.JOURNALED):
            await self.settle_unstacked(entry, status.state)
            status = await cash.cash_in_status()
        if status.state is CashInState.ACTIVE:
            with contextlib.suppress(DeviceError):
                returned = await cash.rollback()
                log.info("kiosk.cash_in_returned", notes=notes_list(returned))
        if self.journal.cash_in() is not None:
            self.journal.close_cash_in()

    async def settle_unstacked(self, entry: Entry, state: CashInState) -> Entry:
        """A journaled cash entry whose stacking did not complete (see ``recover_cash``)."""
        if state is CashInState.ACTIVE:
            try:
                await self.devices.cash.stack()
            except DeviceError:
                state = (await self.devices.cash.cash_in_status()).state
                if state is CashInState.ACTIVE:
                    await self.devices.cash.rollback()
                    return self.journal.mark_cancelled(entry.serial, "stack failed; returned")
            else:
                return self.journal.mark_stacked(entry.serial)
        if state is CashInState.ROLLBACK:
            return self.journal.mark_cancelled(entry.serial, "returned to the customer")
        if state is not CashInState.OK:
            self.raise_alarm(
                "cash_in_uncertain", "major", "cash_acceptor", f"serial {entry.serial}"
            )
        return self.journal.mark_stacked(entry.serial)

    # -- devices -------------------------------------------------------------------------
    async def refresh_devices(self) -> dict[str, DeviceStatus]:
        """Poll every device; a device that turns faulty or offline raises an alarm."""
        for device in self.devices.all():
            try:
                status = await device.status()
            except Exception as exc:  # a driver that cannot even answer is offline
                log.warning("kiosk.device_status_failed", device=device.name, error=str(exc))
                status = DeviceStatus(DeviceState.OFFLINE, "no_response")
            self.statuses[device.name] = status
            self._alarm_on_change(device.name, status)
        return dict(self.statuses)

    def _alarm_on_change(self, name: str, status: DeviceStatus) -> None:
        if status.state.usable:
            self._alarmed.pop(name, None)
            return
        if name in self._alarmed and self._alarmed[name] == status.detail:
            return
        self._alarmed[name] = status.detail
        code = "device_offline" if status.state is DeviceState.OFFLINE else "device_fault"
        self.raise_alarm(code, "major", name, status.detail or status.state.value)

    # -- journaled requests ---------------------------------------------------------------
    def raise_alarm(self, alarm_code: str, severity: str, device: str, detail: str) -> Entry:
        """ALARM (9002), journaled: it reaches the server even across restarts."""
        message = translate(ALARM_MESSAGES[alarm_code], "en")
        body = {
            "alarm_code": alarm_code,
            "severity": severity,
            "device": device,
            "message": f"{message}: {detail}"[:1000],
            "raised_ms": self.clock.now_ms(),
        }
        log.warning("kiosk.alarm", alarm_code=alarm_code, device=device, detail=detail)
        entry = self.journal.add(9002, encode_body(body), business_date=self.business_date())
        self.wake()
        return entry

    def journal_request(self, serv_type: int, body: Mapping[str, Any], **extra: Any) -> Entry:
        return self.journal.add(
            serv_type, encode_body(body), business_date=self.business_date(), **extra
        )

    async def send_entry(self, entry: Entry) -> Answer | None:
        """Send (or resend) a journaled entry with its own serial and bytes and settle it
        by the answer. None: no answer now (it stays pending, unless settled otherwise)."""
        if entry.serial in self._sending:
            return None  # already on its way (the customer's flow or the service loop)
        entry = self.journal.entry(entry.serial)
        if entry.state is not State.PENDING:
            return None  # settled meanwhile (a snapshot of the service loop went stale)
        self._sending.add(entry.serial)
        try:
            return await self._send(entry)
        finally:
            self._sending.discard(entry.serial)

    async def _send(self, entry: Entry) -> Answer | None:
        self.journal.note_attempt(entry.serial)
        try:
            if SERV_TYPES[entry.serv_type].channel is Channel.MANAGEMENT:
                answer = await self.management.request(entry.serial, entry.serv_type, entry.body)
            else:
                answer = await self.business.request(
                    entry.serv_type, entry.body, serial=entry.serial
                )
        except ProtocolFault as exc:
            log.error("kiosk.protocol_fault", serial=entry.serial, details=str(exc))
            await self._reject(entry, MALFORMED, "malformed frame (10001)")
            return None
        except (TransportError, TerminalRefused) as exc:
            log.info("kiosk.no_answer", serial=entry.serial, error=str(exc))
            return None
        await self.settle(entry, answer)
        return answer

    async def settle(self, entry: Entry, answer: Answer) -> None:
        code = answer.err_number
        if not answer.authenticated:
            return  # a hint the client could not resolve: resend later
        if is_final(code):
            entry = self.journal.record_answer(entry.serial, code, answer.body)
            await self._after_answer(entry, answer)
        elif code == SERIAL_CONFLICT:
            last = answer.details.get("last_serial")
            if isinstance(last, int):
                self.journal.move_past(last)
            self.journal.mark_final_failure(
                entry.serial, State.CONFLICT, code, f"server last_serial {last}"
            )
            if entry.serv_type == 2002:
                await self._void_card(entry)
            if entry.serv_type != 9002:  # an alarm about an alarm could loop
                self.raise_alarm("serial_conflict", "critical", "agent", f"serial {entry.serial}")
        elif code in UNCHANGEABLE:
            if code == OUT_OF_SERVICE:
                self.out_of_service = True
            await self._reject(entry, code, str(answer.error.get("details")))
        # 9xxxx, 10006 after retries: pending, resent later.

    async def _reject(self, entry: Entry, code: str, remark: str) -> None:
        self.journal.mark_final_failure(entry.serial, State.REJECTED, code, remark[:500])
        if entry.serv_type == 2002:
            await self._void_card(entry)
        if entry.replay and entry.serv_type != 9002:
            self.raise_alarm("request_rejected", "major", "agent", f"serial {entry.serial} {code}")

    async def _after_answer(self, entry: Entry, answer: Answer) -> None:
        if entry.serv_type == 2009 and answer.ok:
            original = self.journal.find(int(entry.request["original_serial"]))
            status = answer.body.get("status")
            if original is not None and original.state is State.ANSWERED and status:
                held = answer.body.get("held_reason")
                self.journal.update_payment_status(
                    original.serial, str(status), held if isinstance(held, str) else None
                )
                if original.serv_type == 2002 and status == "voided":
                    await self._void_card(original)

    async def _void_card(self, entry: Entry) -> None:
        """Reverse a card authorisation with the acquirer (the 2002 body holds its
        references, never the card number)."""
        auth = CardAuthorisation.from_body(entry.request["card"])
        try:
            voided = await self.devices.card.void(auth)
        except DeviceError as exc:
            voided = False
            log.warning("kiosk.card_void_failed", serial=entry.serial, reason=exc.reason)
        if not voided:
            self.raise_alarm("card_void_failed", "major", "card_module", f"serial {entry.serial}")

    async def drain(self) -> int:
        """Resend every pending entry (oldest first); stops at the first entry that gets
        no answer. Returns how many were settled."""
        settled = 0
        for entry in self.journal.entries(State.PENDING, replay_only=True):
            if entry.serial in self._sending:
                continue
            is_business = SERV_TYPES[entry.serv_type].channel is Channel.BUSINESS
            if is_business and not self.business.connected:
                continue
            answer = await self.send_entry(entry)
            if answer is None:
                if is_business:
                    break
                continue
            settled += 1
        return settled

    # -- plain requests ---------------------------------------------------------------------
    async def ask(self, serv_type: int, body: Mapping[str, Any]) -> Answer:
        """A request that is not journaled, under a fresh serial. Raises ``NotConnected``
        / ``TransportError`` / ``TerminalRefused`` when no answer came."""
        raw = encode_body(body)
        if SERV_TYPES[serv_type].channel is Channel.MANAGEMENT:
            answer = await self.management.request(self.journal.next_serial(), serv_type, raw)
        else:
            answer = await self.business.request(serv_type, raw)
        if answer.err_number == OUT_OF_SERVICE:
            self.out_of_service = True
        return answer

    # -- status, commands ------------------------------------------------------------------
    async def status_body(self) -> dict[str, Any]:
        await self.refresh_devices()
        box_id = self.journal.cash_box_id or ""
        paper = await self._paper()
        return {
            "software_version": self.config.software_version,
            "uptime_s": int(time.monotonic() - self._started),
            "device_mode": self.config.device_mode,
            "devices": {name: status.report() for name, status in self.statuses.items()},
            "cash_box": {
                "box_id": box_id,
                "notes": notes_list(self.journal.box_contents(box_id)),
                "capacity_notes": self.devices.cash.capacity_notes,
            },
            "printer_paper": paper,
        }

    async def _paper(self) -> str:
        try:
            return (await self.devices.printer.paper()).value
        except DeviceError:
            return "out"

    async def report_status(self) -> bool:
        """STATUS_REPORT (9001) and the commands its answer carries. True if answered."""
        body = await self.status_body()
        try:
            answer = await self.ask(9001, body)
        except (TransportError, TerminalRefused, ProtocolFault) as exc:
            log.info("kiosk.status_report_failed", error=str(exc))
            return False
        if not answer.ok:
            log.warning("kiosk.status_report_refused", err_number=answer.err_number)
            return False
        self.last_report = body
        commands = answer.body.get("commands")
        for command in commands if isinstance(commands, list) else []:
            if isinstance(command, dict):
                await self.execute(command)
        return True

    async def execute(self, command: Mapping[str, Any]) -> None:
        """Run a remote command once, journaling its COMMAND_ACK (9005) with it."""
        command_id = command.get("command_id")
        kind = command.get("type")
        if (
            not isinstance(command_id, str)
            or not command_id
            or self.journal.command_done(command_id)
        ):
            return
        kind = kind if isinstance(kind, str) else ""
        result, detail = "done", None
        if kind == "out_of_service":
            self.out_of_service = True
        elif kind == "in_service":
            self.out_of_service = False
        elif kind == "reload_config":
            if not await self.reload_config():
                result, detail = "failed", "config pull failed"
        elif kind == "restart":
            if self.on_restart is None:
                result, detail = "failed", "restart not supported by this agent's host"
        else:
            result, detail = "failed", f"unknown command type {kind[:64]!r}"
        ack: dict[str, Any] = {"command_id": command_id, "result": result}
        if detail is not None:
            ack["detail"] = detail
        self.journal.journal_ack(
            command_id,
            kind or "unknown",
            result,
            encode_body(ack),
            business_date=self.business_date(),
        )
        log.info("kiosk.command", command_id=command_id, type=kind, result=result)
        self.wake()
        if kind == "restart" and self.on_restart is not None:
            # The ack is journaled: the restarted agent sends it.
            self.on_restart()

    async def reload_config(self) -> bool:
        try:
            answer = await self.ask(9004, {"config_version": self.config_version})
        except (TransportError, TerminalRefused, ProtocolFault):
            return False
        version = answer.body.get("config_version")
        if not answer.ok or not isinstance(version, int):
            return False
        self.config_version = version
        self.journal.put("config", json.dumps(answer.body.get("config") or {}))
        return True

    # -- payments still pending -----------------------------------------------------------
    async def poll_pending_payments(self) -> int:
        """TXN_STATUS (2012) for every answered payment still ``pending``; returns how
        many reached a final status."""
        done = 0
        for entry in self.journal.entries(State.ANSWERED, serv_types=(2001, 2002)):
            if entry.payment_status != "pending":
                continue
            try:
                answer = await self.ask(2012, {"original_serial": entry.serial})
            except (TransportError, TerminalRefused, ProtocolFault):
                break
            status = answer.body.get("status")
            if answer.ok and isinstance(status, str):
                held = answer.body.get("held_reason")
                self.journal.update_payment_status(
                    entry.serial, status, held if isinstance(held, str) else None
                )
                done += status != "pending"
            else:
                log.warning("kiosk.txn_status_refused", serial=entry.serial, err=answer.err_number)
        return done

    # -- cash collection ---------------------------------------------------------------------
    async def collect_cash(
        self, counted: Mapping[int, int], operator_id: str, new_box_id: str
    ) -> Answer | None:
        """CASH_COLLECTION (9003): the box was swapped; the new one is in use from now."""
        box_id = self.journal.cash_box_id or ""
        if not new_box_id or new_box_id == box_id:
            raise ValueError("a collection needs a new box id")
        body = {
            "box_id": box_id,
            "counted": [{"value": v, "count": c} for v, c in sorted(counted.items())],
            "operator_id": operator_id,
            "collected_ms": self.clock.now_ms(),
            "new_box_id": new_box_id,
        }
        entry = self.journal.journal_collection(
            encode_body(body), business_date=self.business_date(), new_box_id=new_box_id
        )
        return await self.send_entry(entry)

    # -- journal upload ------------------------------------------------------------------------
    def upload_entries(self, business_date: str) -> list[dict[str, Any]]:
        entries = []
        for entry in self.journal.entries(serv_types=(2001, 2002)):
            if entry.business_date != business_date or entry.state in (
                State.JOURNALED,
                State.CANCELLED,
            ):
                continue
            if entry.state is State.ANSWERED and entry.payment_status:
                status = entry.payment_status
            elif entry.state is State.PENDING:
                status = "unanswered"
            else:
                status = entry.state.value
            amount = entry.amount if entry.amount is not None else 0
            entries.append(
                {
                    "serial": entry.serial,
                    "serv_type": entry.serv_type,
                    "amount": amount,
                    "status": status,
                }
            )
        return entries

    async def upload_journal(self, business_date: str) -> Answer | None:
        """JOURNAL_UPLOAD (9006) of one business date's payments."""
        body = {"business_date": business_date, "entries": self.upload_entries(business_date)}
        try:
            answer = await self.ask(9006, body)
        except (TransportError, TerminalRefused, ProtocolFault):
            return None
        if answer.ok:
            self.journal.put(f"upload:{business_date}", json.dumps(answer.body))
            differences = {
                k: answer.body.get(k)
                for k in ("missing_on_server", "missing_on_terminal", "mismatched")
                if answer.body.get(k)
            }
            if differences:
                log.warning("kiosk.journal_differences", business_date=business_date, **differences)
        return answer

    async def maybe_upload_journal(self) -> None:
        """Once a day: yesterday's journal, after the business date has ended."""
        today = date.fromisoformat(self.business_date())
        yesterday = (today - timedelta(days=1)).isoformat()
        if (self.journal.get("last_upload") or "") >= yesterday:
            return
        answer = await self.upload_journal(yesterday)
        if answer is not None and answer.ok:
            self.journal.put("last_upload", yesterday)

    # -- the service loop ------------------------------------------------------------------------
    async def service_once(self) -> None:
        """One round of the periodic work."""
        await self.drain()
        if not self.business.connected:
            return
        now = time.monotonic()
        if self._report_due or now >= self._next_report:
            # In service after the first report since sign-on, answered or not: a
            # management channel that refuses reports must not keep customers out.
            await self.report_status()
            self._report_due = False
            self.ready = True
            self._next_report = now + self.config.status_interval_s
        if now >= self._next_txn_poll:
            await self.poll_pending_payments()
            self._next_txn_poll = now + self.config.txn_status_interval_s
        await self.maybe_upload_journal()

    async def _service_loop(self) -> None:
        while True:
            try:
                await self.service_once()
            except Exception:  # the loop must survive anything one round throws
                log.exception("kiosk.service_round_failed")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that races its timeout, and the loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.retry_interval_s):
                    await self._wake.wait()
            self._wake.clear()
