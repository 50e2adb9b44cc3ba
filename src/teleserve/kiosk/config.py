"""The agent's configuration: who the terminal is, where the server is, how it connects.

The kiosk is a separate program from the server, so it does not read the server's
``Settings``: everything comes from the command line (``kiosk.cli``) or a test.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from teleserve.gateway.mac import KEY_SIZE

DEFAULT_BUSINESS_PORT = 7070
DEFAULT_MANAGEMENT_PORT = 7071
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_TERMINAL_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")  # PROTOCOL.md, header


class ConfigError(ValueError):
    """A configuration the agent cannot start with (the CLI prints it and exits)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    business_port: int = DEFAULT_BUSINESS_PORT
    management_port: int = DEFAULT_MANAGEMENT_PORT

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class KioskConfig:
    terminal_id: str
    master_key: bytes
    endpoint: Endpoint
    # None: plaintext (the server admits it from loopback, or in a lab that allows it).
    tls: ssl.SSLContext | None = None
    software_version: str = "1.0.0"
    device_mode: str = "sim"  # "sim" or "hardware" (PROTOCOL.md, SIGN_ON / 9001)
    timezone: str = "Asia/Shanghai"  # the operator's zone: business dates of the journal
    # How long the customer waits for an answer before the journal takes over.
    answer_timeout_s: float = 20.0
    connect_timeout_s: float = 10.0
    # Reconnect backoff: exponential from base to max, with full jitter.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # Resend pending journal entries this often while connected.
    retry_interval_s: float = 5.0
    # STATUS_REPORT (9001) period; TXN_STATUS polling period for pending payments.
    status_interval_s: float = 60.0
    txn_status_interval_s: float = 30.0

    def __post_init__(self) -> None:
        if not _TERMINAL_ID.fullmatch(self.terminal_id):
            raise ConfigError(f"terminal id {self.terminal_id!r} is not [A-Za-z0-9_-]{{1,16}}")
        if len(self.master_key) != KEY_SIZE:
            raise ConfigError("a master key has 32 bytes")
        if self.device_mode not in ("sim", "hardware"):
            raise ConfigError(f"device mode {self.device_mode!r} is not sim or hardware")


def parse_server(text: str, management_port: int | None = None) -> Endpoint:
    """``host``, ``host:port`` or ``[v6]:port``; the port is the business channel's. The
    management port defaults to 7071, or to the business port + 1 when one is given
    (the server's two ports are adjacent by default)."""
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"server {text!r}: unclosed [")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"server {text!r}: expected :port after ]")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ConfigError("the server needs a host")
    business = DEFAULT_BUSINESS_PORT
    if port is not None:
        if not port.isdecimal() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"server {text!r}: port must be 1-65535")
        business = int(port)
    if management_port is None:
        management_port = business + 1 if port is not None else DEFAULT_MANAGEMENT_PORT
    if not 1 <= management_port <= 65535:
        raise ConfigError("management port must be 1-65535")
    return Endpoint(host, business, management_port)


def read_key_file(path: Path) -> bytes:
    """The master key file: the 64 hex digits ``teleserve terminal register`` printed once
    (surrounding whitespace and a ``master_key`` label are tolerated)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    if text.startswith("master_key"):
        text = text.removeprefix("master_key").strip(" :=\t")
    if not _HEX_KEY.fullmatch(text):
        raise ConfigError(f"key file {path} does not hold 64 hex digits")
    return bytes.fromhex(text)


def tls_context(
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.2+ verifying the server against ``ca_file`` (the system store otherwise),
    with the terminal's client certificate for mutual TLS when one is given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    elif key_file is not None:
        raise ConfigError("a client key needs its certificate (--client-cert)")
    return context
