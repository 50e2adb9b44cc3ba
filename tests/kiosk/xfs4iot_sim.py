"""A small XFS4IoT device simulator for the tests: a WebSocket server (in the test's
event loop, or in a thread of its own) with a service publisher and three services —
cash acceptor (CashAcceptor + CashManagement + Storage), card reader, receipt printer.

It speaks the protocol as a vendor's service would (acknowledge, events, one completion;
``Common.Cancel``; ``invalidRequestID`` for a request id in use) and offers the controls
of the sim drivers: insert notes, jam, box full, fail the next stack, insert a card,
paper low / out, device faults, and a service going away (its connections dropped and
new ones refused). Card declines are the acquirer's (``SimAcquirer``), not the reader's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from teleserve.kiosk.devices.sim import CNY_NOTES

PREFIX = "/xfs4iot/v1.0"


class Done(Exception):
    """A handler's non-success completion."""

    def __init__(self, code: str, error_code: str | None = None, **payload: Any) -> None:
        super().__init__(code)
        self.code = code
        self.payload = dict(payload)
        if error_code is not None:
            self.payload["errorCode"] = error_code


Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
Handler = Callable[[dict[str, Any], int, Emit], Awaitable[dict[str, Any] | None]]


def item_name(fen: int) -> str:
    return f"typeCNY{fen // 100}"


@dataclass
class Device:
    """Fault switches every simulated device has."""

    fault: bool = False
    offline: bool = False  # powered but offline (common.device "offline")

    def common(self) -> dict[str, Any]:
        device = "offline" if self.offline else "hardwareError" if self.fault else "online"
        return {"device": device}

    def require_usable(self) -> None:
        if self.offline:
            raise Done("deviceNotReady")
        if self.fault:
            raise Done("hardwareError")


@dataclass
class CashSim(Device):
    capacity: int = 2000
    accepted: frozenset[int] = frozenset(CNY_NOTES)
    state: str = "ok"
    escrow: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)  # the last cash-in's notes
    box: dict[int, int] = field(default_factory=dict)
    tray: dict[int, int] = field(default_factory=dict)  # accepted, not yet counted
    refused: list[int] = field(default_factory=list)
    returned: list[dict[int, int]] = field(default_factory=list)
    jammed: bool = False
    stack_fault: bool = False
    inserted: asyncio.Event | None = None
    refusals: list[int] = field(default_factory=list)  # not yet told to a CashIn

    @property
    def box_count(self) -> int:
        return sum(self.box.values())

    def insert(self, value: int, count: int = 1) -> bool:
        """As ``SimCashAcceptor.insert``: False when refused and handed back."""
        room = self.capacity - self.box_count - sum(self.escrow.values()) - sum(self.tray.values())
        if (
            self.offline
            or self.fault
            or self.jammed
            or self.state != "active"
            or value not in self.accepted
            or count > room
        ):
            self.refused.extend([value] * count)
            self.refusals.extend([value] * count)
            self._wake()
            return False
        self.tray[value] = self.tray.get(value, 0) + count
        self._wake()
        return True

    def fill_box(self) -> None:
        missing = self.capacity - self.box_count
        if missing > 0:
            self.box[100] = self.box.get(100, 0) + missing

    def _wake(self) -> None:
        if self.inserted is not None:
            self.inserted.set()

    def counts(self, notes: dict[int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {"unrecognized": 0}
        for value, count in sorted(notes.items()):
            out[item_name(value)] = {"fit": count, "unfit": 0, "suspect": 0, "counterfeit": 0}
        return out

    def status(self) -> dict[str, Any]:
        transport = "inoperative" if self.jammed else "ok"
        common = self.common()
        if self.jammed and common["device"] == "online":
            common["device"] = "hardwareError"
        return {
            "common": common,
            "cashAcceptor": {
                "positions": [
                    {"position": "inDefault", "shutter": "closed", "transport": transport}
                ]
            },
        }

    def storage(self) -> dict[str, Any]:
        count = self.box_count
        level = (
            "full"
            if count >= self.capacity
            else "high"
            if count >= self.capacity * 9 // 10
            else "ok"
        )
        return {
            "storage": {
                "unit1": {
                    "id": "CI1",
                    "positionName": "cash box",
                    "capacity": self.capacity,
                    "status": "ok",
                    "cash": {"status": {"count": count, "replenishmentStatus": level}},
                }
            }
        }

    def require_movable(self) -> None:
        self.require_usable()
        if self.jammed:
            raise Done("hardwareError")


@dataclass
class CardSim(Device):
    pan: str | None = None
    present: bool = False  # a card inside the reader
    jammed: bool = False
    ejected: int = 0
    inserted: asyncio.Event | None = None

    def insert_card(self, pan: str) -> None:
        self.pan = pan
        if self.inserted is not None:
            self.inserted.set()


@dataclass
class PrinterSim(Device):
    paper: str = "full"  # full, low, out, jammed
    buffer: list[str] = field(default_factory=list)
    printed: list[list[str]] = field(default_factory=list)


class XfsSimulator:
    def __init__(self, *, capacity_notes: int = 2000, accepted: Iterable[int] = CNY_NOTES) -> None:
        self.cash = CashSim(capacity=capacity_notes, accepted=frozenset(accepted))
        self.card = CardSim()
        self.printer = PrinterSim()
        self.down: set[str] = set()  # services whose connections are refused
        self.commands: list[tuple[str, str]] = []  # (service, command name) in order
        self.raw: list[str] = []  # every message received, as text
        self._server: Server | None = None
        self._connections: dict[str, set[ServerConnection]] = {}
        self.port = 0
        self.services: dict[str, dict[str, Handler]] = {
            "cashacceptor": self._cash_handlers(),
            "cardreader": self._card_handlers(),
            "printer": self._printer_handlers(),
        }
        self.interfaces = {
            "cashacceptor": ["Common", "CashAcceptor", "CashManagement", "Storage"],
            "cardreader": ["Common", "CardReader"],
            "printer": ["Common", "Printer"],
        }

    # -- controls ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def insert_notes(self, value: int, count: int = 1) -> bool:
        return self.cash.insert(value, count)

    def jam(self) -> None:
        self.cash.jammed = True

    def clear_jam(self) -> None:
        self.cash.jammed = False

    def box_full(self) -> None:
        self.cash.fill_box()

    def fail_next_stack(self) -> None:
        self.cash.stack_fault = True

    def insert_card(self, pan: str) -> None:
        self.card.insert_card(pan)

    def paper(self, level: str) -> None:
        self.printer.paper = {"ok": "full"}.get(level, level)

    async def take_down(self, service: str) -> None:
        """The service process dies: connections dropped, new ones refused."""
        self.down.add(service)
        for ws in list(self._connections.get(service, ())):
            await ws.close()

    def bring_up(self, service: str) -> None:
        self.down.discard(service)

    # -- server -----------------------------------------------------------------------
    async def start(self, port: int = 0) -> str:
        self.cash.inserted = asyncio.Event()
        self.card.inserted = asyncio.Event()
        self._server = await serve(self._connection, "127.0.0.1", port, process_request=self._admit)
        self.port = self._server.sockets[0].getsockname()[1] if port == 0 else port
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _service_of(self, path: str) -> str | None:
        if path.rstrip("/") == PREFIX:
            return "publisher"
        if path.startswith(PREFIX + "/"):
            name = path[len(PREFIX) + 1 :].strip("/").lower()
            return name if name in self.services else None
        return None

    def _admit(self, ws: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        service = self._service_of(request.path)
        if service is None:
            return ws.respond(HTTPStatus.NOT_FOUND, "no such service\n")
        if service in self.down:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "service down\n")
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        service = self._service_of(ws.request.path)
        assert service is not None
        self._connections.setdefault(service, set()).add(ws)
        running: dict[int, asyncio.Task[None]] = {}
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode()
                self.raw.append(text)
                await self._on_message(ws, service, text, running)
        except ConnectionClosed:
            pass
        finally:
            self._connections[service].discard(ws)
            for task in running.values():
                task.cancel()

    async def _on_message(
        self, ws: ServerConnection, service: str, text: str, running: dict[int, asyncio.Task[None]]
    ) -> None:
        try:
            data = json.loads(text)
            header = data["header"]
            name, request_id = header["name"], header["requestId"]
            assert header["type"] == "command" and isinstance(name, str)
        except (ValueError, KeyError, TypeError, AssertionError):
            await _send(ws, "acknowledge", "Unknown", None, status="invalidMessage")
            return
        if not isinstance(request_id, int) or request_id <= 0 or request_id in running:
            await _send(ws, "acknowledge", name, request_id, status="invalidRequestID")
            return
        self.commands.append((service, name))
        await _send(ws, "acknowledge", name, request_id)
        payload = data.get("payload") or {}
        timeout = header.get("timeout") or 0
        if name == "Common.Cancel":  # runs at once, beside what it cancels
            for rid in payload.get("requestIds") or list(running):
                if rid in running:
                    running[rid].cancel()
            await _send(ws, "completion", name, request_id, completionCode="success")
            return
        task = asyncio.create_task(self._run(ws, service, name, request_id, payload, timeout))
        running[request_id] = task
        task.add_done_callback(lambda _: running.pop(request_id, None))

    async def _run(
        self,
        ws: ServerConnection,
        service: str,
        name: str,
        request_id: int,
        payload: dict[str, Any],
        timeout_ms: int,
    ) -> None:
        async def emit(event: str, body: dict[str, Any]) -> None:
            await _send(ws, "event", event, request_id, payload=body)

        code, out = "success", None
        try:
            handler = self._handler(service, name)
            if handler is None:
                raise Done("unsupportedCommand")
            if timeout_ms:
                async with asyncio.timeout(timeout_ms / 1000):
                    out = await handler(payload, timeout_ms, emit)
            else:
                out = await handler(payload, timeout_ms, emit)
        except Done as done:
            code, out = done.code, done.payload or None
        except TimeoutError:
            code = "timeOut"
        except asyncio.CancelledError:
            code = "canceled"
        with contextlib.suppress(ConnectionClosed):
            await _send(ws, "completion", name, request_id, payload=out, completionCode=code)

    def _handler(self, service: str, name: str) -> Handler | None:
        if service == "publisher":
            return self._get_services if name == "ServicePublisher.GetServices" else None
        if name == "Common.Capabilities":

            async def capabilities(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
                return {"interfaces": [{"name": i} for i in self.interfaces[service]]}

            return capabilities
        return self.services[service].get(name)

    async def _get_services(self, p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
        uris = [f"{self.url}{PREFIX}/{name}" for name in self.services if name not in self.down]
        return {
            "vendorName": "Teleserve test simulator",
            "services": [{"serviceURI": u} for u in uris],
        }

    # -- cash acceptor -------------------------------------------------------------------
    def _cash_handlers(self) -> dict[str, Handler]:
        cash = self.cash

        async def status(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            return cash.status()

        async def storage(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            return cash.storage()

        async def note_types(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            items = {
                item_name(v): {
                    "cashItem": {
                        "noteID": i + 1,
                        "currency": "CNY",
                        "value": v / 100,
                        "release": 0,
                    },
                    "enabled": v in cash.accepted,
                }
                for i, v in enumerate(CNY_NOTES)
            }
            return {"items": items}

        async def start(p: dict[str, Any], t: int, e: Emit) -> None:
            cash.require_movable()
            if cash.state == "active":
                raise Done("commandErrorCode", "cashInActive")
            if cash.box_count >= cash.capacity:
                raise Done("commandErrorCode", "cashUnitError")
            cash.state, cash.escrow, cash.tray, cash.refusals = "active", {}, {}, []
            cash.last = {}

        async def cash_in(p: dict[str, Any], t: int, emit: Emit) -> dict[str, Any]:
            if cash.state != "active":
                raise Done("commandErrorCode", "noCashInActive")
            cash.require_movable()
            await emit("CashAcceptor.InsertItemsEvent", {})
            assert cash.inserted is not None
            while not cash.tray:
                while cash.refusals:
                    cash.refusals.pop()
                    await emit("CashAcceptor.InputRefuseEvent", {"reason": "invalidBill"})
                cash.inserted.clear()
                await cash.inserted.wait()
                cash.require_movable()
            taken, cash.tray = cash.tray, {}
            for value, count in taken.items():
                cash.escrow[value] = cash.escrow.get(value, 0) + count
            cash.last = dict(cash.escrow)
            return {"items": cash.counts(taken)}

        async def end(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any] | None:
            if cash.state != "active":
                raise Done("commandErrorCode", "noCashInActive")
            if cash.stack_fault:
                cash.stack_fault, cash.jammed = False, True
                raise Done("hardwareError")
            cash.require_movable()
            for value, count in cash.escrow.items():
                cash.box[value] = cash.box.get(value, 0) + count
            cash.escrow, cash.state = {}, "ok"
            return None

        async def rollback(p: dict[str, Any], t: int, e: Emit) -> None:
            if cash.state != "active":
                raise Done("commandErrorCode", "noCashInActive")
            cash.returned.append(cash.escrow)
            cash.escrow, cash.state = {}, "rollback"

        async def cash_in_status(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            notes = cash.escrow if cash.state == "active" else cash.last
            return {
                "status": cash.state,
                "numOfRefused": len(cash.refused),
                "noteNumberList": cash.counts(notes),
            }

        return {
            "Common.Status": status,
            "Storage.GetStorage": storage,
            "CashManagement.GetBankNoteTypes": note_types,
            "CashAcceptor.CashInStart": start,
            "CashAcceptor.CashIn": cash_in,
            "CashAcceptor.CashInEnd": end,
            "CashAcceptor.CashInRollback": rollback,
            "CashAcceptor.GetCashInStatus": cash_in_status,
        }

    # -- card reader ----------------------------------------------------------------------
    def _card_handlers(self) -> dict[str, Handler]:
        card = self.card

        async def status(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            media = "jammed" if card.jammed else "present" if card.present else "notPresent"
            return {"common": card.common(), "cardReader": {"media": media}}

        async def read(p: dict[str, Any], t: int, emit: Emit) -> dict[str, Any]:
            card.require_usable()
            if card.jammed:
                raise Done("commandErrorCode", "mediaJam")
            assert card.inserted is not None
            if card.pan is None:
                await emit("CardReader.InsertCardEvent", {})
            while card.pan is None:
                card.inserted.clear()
                await card.inserted.wait()
            pan, card.pan, card.present = card.pan, None, True
            await emit("CardReader.MediaInsertedEvent", {})
            track2 = f";{pan}=29122011000012340000?".encode("ascii")
            out: dict[str, Any] = {}
            if p.get("track2"):
                out["track2"] = {"status": "ok", "data": base64.b64encode(track2).decode()}
            return out

        async def move(p: dict[str, Any], t: int, e: Emit) -> None:
            card.require_usable()
            if not card.present:
                raise Done("commandErrorCode", "noMedia")
            if p.get("to") != "exit":
                raise Done("unsupportedData")
            card.present = False
            card.ejected += 1

        return {"Common.Status": status, "CardReader.ReadRawData": read, "CardReader.Move": move}

    # -- printer ------------------------------------------------------------------------------
    def _printer_handlers(self) -> dict[str, Handler]:
        printer = self.printer

        async def status(p: dict[str, Any], t: int, e: Emit) -> dict[str, Any]:
            return {
                "common": printer.common(),
                "printer": {"media": "notPresent", "paper": {"upper": printer.paper}},
            }

        async def print_raw(p: dict[str, Any], t: int, e: Emit) -> None:
            printer.require_usable()
            if printer.paper == "out":
                raise Done("commandErrorCode", "paperOut")
            text = base64.b64decode(p["data"]).decode("gb18030")
            printer.buffer.extend(text.splitlines())

        async def control(p: dict[str, Any], t: int, e: Emit) -> None:
            printer.require_usable()
            if (p.get("mediaControl") or {}).get("cut"):
                printer.printed.append(printer.buffer)
                printer.buffer = []

        return {
            "Common.Status": status,
            "Printer.PrintRaw": print_raw,
            "Printer.ControlMedia": control,
        }


async def _send(
    ws: ServerConnection,
    kind: str,
    name: str,
    request_id: int | None,
    *,
    payload: dict[str, Any] | None = None,
    **header: Any,
) -> None:
    message: dict[str, Any] = {
        "header": {"name": name, "requestId": request_id, "type": kind, "version": "2.0", **header}
    }
    if payload is not None:
        message["payload"] = payload
    await ws.send(json.dumps(message))


class SimulatorThread:
    """The simulator on its own event loop, for code under test that runs its own
    (``asyncio.run`` inside the kiosk CLI's device set-up)."""

    def __init__(self, sim: XfsSimulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> XfsSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
