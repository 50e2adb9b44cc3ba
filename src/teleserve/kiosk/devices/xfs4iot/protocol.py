"""The XFS4IoT message layer: one WebSocket per device service, commands correlated with
their acknowledge, events and completion by ``requestId``, and service discovery.

Every message is ``{"header": {...}, "payload": {...}}``. The client picks a
``requestId`` (a positive integer, unique among its commands in flight on that
connection) for each command; the service answers with one ``acknowledge`` (``status``
absent or null: queued; otherwise ``invalidMessage`` / ``invalidRequestID`` /
``tooManyRequests`` and nothing more follows), any number of ``event`` messages and one
``completion`` carrying ``completionCode`` (``success``, ``canceled``, ``timeOut``,
``hardwareError``, …) and, for command errors, a payload ``errorCode``. ``unsolicited``
messages (status changes) carry no ``requestId``; this layer ignores them: the drivers
ask ``Common.Status`` when they want to know.

Nothing here logs a payload: card track data travels through this layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from teleserve.core.logging import get_logger

log = get_logger("teleserve.kiosk.xfs4iot")

PUBLISHER_PATH = "/xfs4iot/v1.0"
DEFAULT_PUBLISHER = "ws://127.0.0.1:5846" + PUBLISHER_PATH

# Message versions this client speaks (the header ``version``). XFS4IoT versions each
# message on its own; these are the versions of the payload shapes used here.
VERSIONS: Mapping[str, str] = {
    "CardReader.ReadRawData": "3.0",
    "Printer.PrintRaw": "3.0",
}
DEFAULT_VERSION = "2.0"

ACK_TIMEOUT_S = 5.0
# Beyond a command's own ``timeout`` the service gets this long to send its completion.
COMPLETION_GRACE_S = 5.0

EventHandler = Callable[[str, dict[str, Any]], None]


class XfsUnavailable(Exception):
    """The service cannot be reached, or the connection broke mid-command."""


class XfsRejected(Exception):
    """The service refused to queue a command (its acknowledge carried a status)."""

    def __init__(self, name: str, status: str) -> None:
        super().__init__(f"{name}: {status}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Completion:
    name: str
    code: str  # completionCode
    payload: dict[str, Any]
    description: str | None = None  # errorDescription (vendor text)

    @property
    def ok(self) -> bool:
        return self.code == "success"

    @property
    def error_code(self) -> str | None:
        value = self.payload.get("errorCode")
        return value if isinstance(value, str) else None


def message(kind: str, name: str, request_id: int | None, **extra: Any) -> dict[str, Any]:
    """A message as the wire carries it (``extra``: ``payload`` and header fields)."""
    payload = extra.pop("payload", None)
    header: dict[str, Any] = {
        "name": name,
        "requestId": request_id,
        "type": kind,
        "version": extra.pop("version", None) or VERSIONS.get(name, DEFAULT_VERSION),
    }
    header.update({k: v for k, v in extra.items() if v is not None})
    out: dict[str, Any] = {"header": header}
    if payload is not None:
        out["payload"] = payload
    return out


def parse(raw: str | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, payload)``; ``ValueError`` for anything that is not an XFS4IoT message."""
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict):
        raise ValueError("not an XFS4IoT message")
    header = data["header"]
    if not isinstance(header.get("name"), str) or not isinstance(header.get("type"), str):
        raise ValueError("header without name or type")
    payload = data.get("payload")
    return header, payload if isinstance(payload, dict) else {}


@dataclass(eq=False)
class Request:
    """One command in flight. Created (and its ``requestId`` taken) before it is sent, so
    a caller can cancel it the moment it exists."""

    connection: XfsConnection
    request_id: int
    name: str
    payload: dict[str, Any] | None
    timeout_ms: int
    on_event: EventHandler | None = None
    acknowledged: asyncio.Future[None] = field(init=False)
    completed: asyncio.Future[Completion] = field(init=False)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.acknowledged = loop.create_future()
        self.completed = loop.create_future()

    @property
    def done(self) -> bool:
        return self.completed.done()

    async def send(self) -> None:
        await self.connection._send(self)

    async def wait(self) -> Completion:
        """The completion. ``XfsRejected`` / ``XfsUnavailable`` / ``TimeoutError``."""
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await asyncio.shield(self.acknowledged)
            limit = self.timeout_ms / 1000 + COMPLETION_GRACE_S if self.timeout_ms else None
            async with asyncio.timeout(limit):
                return await asyncio.shield(self.completed)
        finally:
            self.connection._forget(self)


class XfsConnection:
    """A client connection to one XFS4IoT service, (re)opened on demand: a broken link
    fails the commands in flight (``XfsUnavailable``) and the next command reconnects."""

    def __init__(self, uri: str, *, open_timeout_s: float = 5.0) -> None:
        self.uri = uri
        self.open_timeout_s = open_timeout_s
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, Request] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def open(self) -> None:
        async with self._lock:
            if self.connected:
                return
            try:
                # proxy=None: the services are on the kiosk PC or its LAN, never behind
                # whatever proxy the environment names.
                self._ws = await connect(
                    self.uri, open_timeout=self.open_timeout_s, proxy=None, max_size=2**22
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                raise XfsUnavailable(f"{self.uri}: {exc.__class__.__name__}") from exc
            self._reader = asyncio.create_task(self._read(self._ws), name=f"xfs:{self.uri}")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._fail_all("connection closed")

    def request(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout_ms: int = 30_000,
        on_event: EventHandler | None = None,
    ) -> Request:
        self._next_id = self._next_id % 2_000_000_000 + 1
        req = Request(self, self._next_id, name, payload, timeout_ms, on_event)
        self._pending[req.request_id] = req
        return req

    async def command(
        self,
        name: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout_ms: int = 30_000,
        on_event: EventHandler | None = None,
    ) -> Completion:
        req = self.request(name, payload, timeout_ms=timeout_ms, on_event=on_event)
        await req.send()
        return await req.wait()

    async def cancel(self, *requests: Request) -> None:
        """``Common.Cancel`` of commands in flight; each still ends with its completion
        (``canceled``, or whatever it reached first)."""
        ids = [r.request_id for r in requests if not r.done]
        if ids:
            with contextlib.suppress(XfsUnavailable, XfsRejected, TimeoutError):
                await self.command("Common.Cancel", {"requestIds": ids}, timeout_ms=5_000)

    # -- internals ----------------------------------------------------------------------
    async def _send(self, req: Request) -> None:
        try:
            await self.open()
            assert self._ws is not None
            body = message(
                "command", req.name, req.request_id, payload=req.payload, timeout=req.timeout_ms
            )
            await self._ws.send(json.dumps(body, separators=(",", ":")))
        except (OSError, WebSocketException) as exc:
            self._forget(req)
            raise XfsUnavailable(f"{self.uri}: {exc.__class__.__name__}") from exc
        except XfsUnavailable:
            self._forget(req)
            raise

    def _forget(self, req: Request) -> None:
        if self._pending.get(req.request_id) is req:
            del self._pending[req.request_id]

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    header, payload = parse(raw)
                except ValueError as exc:
                    log.warning("xfs4iot.bad_message", uri=self.uri, error=str(exc))
                    continue
                self._dispatch(header, payload)
        except WebSocketException:
            pass
        finally:
            self._fail_all("connection lost")

    def _dispatch(self, header: dict[str, Any], payload: dict[str, Any]) -> None:
        kind, name = header["type"], header["name"]
        req = self._pending.get(header.get("requestId") or 0)
        if req is None:
            if kind != "unsolicited":
                log.info("xfs4iot.unmatched_message", uri=self.uri, type=kind, name=name)
            return
        if kind == "acknowledge":
            status = header.get("status")
            if status:
                req.acknowledged.set_exception(XfsRejected(req.name, str(status)))
                req.completed.cancel()
            elif not req.acknowledged.done():
                req.acknowledged.set_result(None)
        elif kind == "event":
            if req.on_event is not None:
                try:
                    req.on_event(name, payload)
                except Exception:  # a driver's event hook must not kill the reader
                    log.exception("xfs4iot.event_handler_failed", name=name)
        elif kind == "completion" and not req.completed.done():
            if not req.acknowledged.done():  # a completion implies the acknowledge
                req.acknowledged.set_result(None)
            description = header.get("errorDescription")
            req.completed.set_result(
                Completion(
                    req.name,
                    str(header.get("completionCode") or "internalError"),
                    payload,
                    description if isinstance(description, str) else None,
                )
            )

    def _fail_all(self, why: str) -> None:
        for req in list(self._pending.values()):
            for future in (req.acknowledged, req.completed):
                if not future.done():
                    future.set_exception(XfsUnavailable(f"{self.uri}: {why}"))
        # Retrieve the exceptions nobody may await, so asyncio does not warn about them.
        for req in list(self._pending.values()):
            for future in (req.acknowledged, req.completed):
                if future.done() and not future.cancelled():
                    future.exception()
        self._pending.clear()


def publisher_uri(url: str) -> str:
    """``ws://host:port`` → the publisher endpoint ``ws://host:port/xfs4iot/v1.0``;
    ``ValueError`` for anything that is not a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"an XFS4IoT service publisher is a ws:// or wss:// URL, not {url!r}")
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    path = parts.path.rstrip("/")
    return url if path else url.rstrip("/") + PUBLISHER_PATH


async def discover(url: str, *, timeout_s: float = 10.0) -> dict[str, str]:
    """Interface name (``CashAcceptor``, ``CardReader``, ``Printer``…) → the URI of the
    first service implementing it: ``ServicePublisher.GetServices`` on the publisher,
    then ``Common.Capabilities`` on every service it lists."""
    publisher = XfsConnection(publisher_uri(url), open_timeout_s=timeout_s)
    try:
        done = await publisher.command("ServicePublisher.GetServices", timeout_ms=10_000)
    finally:
        await publisher.close()
    if not done.ok:
        raise XfsUnavailable(f"GetServices answered {done.code}")
    uris = [
        s["serviceURI"]
        for s in done.payload.get("services") or []
        if isinstance(s, dict) and isinstance(s.get("serviceURI"), str)
    ]
    found: dict[str, str] = {}
    for uri in uris:
        service = XfsConnection(uri, open_timeout_s=timeout_s)
        try:
            caps = await service.command("Common.Capabilities", timeout_ms=10_000)
        except (XfsUnavailable, XfsRejected, TimeoutError) as exc:
            log.warning("xfs4iot.service_unreachable", uri=uri, error=str(exc))
            continue
        finally:
            await service.close()
        for interface in caps.payload.get("interfaces") or []:
            name = interface.get("name") if isinstance(interface, dict) else None
            if isinstance(name, str):
                found.setdefault(name, uri)
    return found
