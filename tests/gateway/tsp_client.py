"""A minimal blocking TSP/1 client for the server tests: real sockets on loopback."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from typing import Any

from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.frame import Frame, Header, decode_frame
from teleserve.gateway.mac import compute_mac
from teleserve.gateway.reply import signed_frame


def now_ms() -> int:
    return int(time.time() * 1000)


def build(
    terminal: str,
    serial: int,
    serv_type: int,
    body: dict[str, Any] | bytes,
    *,
    key: bytes,
    session_id: str = "00000000",
    timestamp_ms: int | None = None,
) -> bytes:
    raw = body if isinstance(body, bytes) else encode_body(body)
    header = Header(
        terminal,
        serial,
        serv_type,
        "Q",
        True,
        "00000",
        now_ms() if timestamp_ms is None else timestamp_ms,
        session_id,
    )
    return signed_frame(header, raw, key)


class Client:
    def __init__(self, port: int, *, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: socket.socket = (
            context.wrap_socket(sock, server_hostname="localhost") if context else sock
        )
        self.sock.settimeout(10)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return data
            data += chunk
        return data

    def frame(self) -> Frame | None:
        """The next frame, or ``None`` when the server closed the connection."""
        try:
            prefix = self._read(4)
        except (ConnectionResetError, ssl.SSLError):
            return None
        if len(prefix) < 4:
            return None
        payload = self._read(int.from_bytes(prefix, "big"))
        decoded = decode_frame(prefix + payload)
        assert isinstance(decoded, Frame), decoded
        return decoded

    def ask(self, raw: bytes) -> Frame:
        self.send(raw)
        reply = self.frame()
        assert reply is not None, "the server closed the connection without answering"
        return reply

    def closed_by_server(self) -> bool:
        """The server closed the connection (end of stream before any further byte)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False


def body_of(frame: Frame) -> dict[str, Any]:
    parsed = parse_body(frame.body)
    assert isinstance(parsed, dict), parsed
    return parsed


def mac_ok(frame: Frame, key: bytes | None) -> bool:
    return compute_mac(key, frame.signed) == frame.mac
