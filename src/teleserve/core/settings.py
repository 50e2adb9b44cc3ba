"""Settings from the environment (prefix ``TELESERVE_``) and ``teleserve.toml``.

Precedence, highest first: constructor arguments, environment variables, ``teleserve.toml``
in the working directory (or the file named by ``TELESERVE_CONFIG``), defaults.
Production mode refuses to start with the default development secrets (see ``check``).
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Development secrets: fine for demo mode and tests, refused in production.
DEV_SECRET_KEY = "dev-secret-key-change-me-0123456789abcdef"  # noqa: S105 (refused in production)
DEV_DATA_KEY = "ZGV2LWRhdGEta2V5LWNoYW5nZS1tZS0wMTIzNDU2Nzg="  # base64 of 32 bytes
DEV_PEPPER = "dev-pepper-change-me"  # refused in production


class Mode(StrEnum):
    production = "production"
    demo = "demo"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TELESERVE_", extra="ignore", toml_file="teleserve.toml"
    )

    database_url: str = "sqlite:///teleserve.db"
    # SQLite: the serve process checkpoints the WAL on a thread of its own, every this
    # many ms while idle (core.wal: keeps the checkpoint out of the money writer's
    # commits); 0 leaves it all to SQLite's auto-checkpoint.
    sqlite_checkpoint_interval_ms: float = Field(default=100.0, ge=0, le=60_000)
    mode: Mode = Mode.production
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    default_locale: str = "zh-CN"
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    # Secrets. ``secret_key`` signs sessions and tokens; ``data_key`` (base64, 32 bytes)
    # encrypts personal data and keys the blind indexes; ``pepper`` is mixed into customer
    # service-password hashes so a stolen database alone cannot be brute-forced offline.
    secret_key: str = DEV_SECRET_KEY
    data_key: str = DEV_DATA_KEY
    pepper: str = DEV_PEPPER

    # Audit log (DESIGN.md section 5).
    audit_chains: int = 16
    audit_checkpoint_dir: Path = Path("audit-checkpoints")
    audit_signing_key_file: Path = Path("audit-signing.key")

    # Operator defaults (DESIGN.md section 5), all overridable.
    customer_login_max_failures: int = 5
    customer_lockout_minutes: int = 15
    otp_resend_seconds: int = 60
    otp_daily_cap_per_number: int = 10
    otp_daily_cap_per_terminal: int = 200
    otp_valid_seconds: int = 300
    otp_max_tries: int = 3
    msisdn_check_per_minute_per_terminal: int = 30
    customer_auth_global_per_minute: int = 600
    customer_auth_per_terminal_per_minute: int = 60
    customer_token_idle_seconds: int = 300
    customer_face_match_pass_mark: int = 80
    number_reservation_minutes: int = 30
    number_quarantine_days: int = 90
    numbers_per_id_card: int = 5
    staff_login_max_failures: int = 5
    staff_lockout_minutes: int = 15
    staff_session_hours: int = 12
    staff_session_idle_minutes: int = 30  # console sessions end after this long unused
    api_token_minutes: int = 60
    # Terminals (PROTOCOL.md): how long a rotated master key stays valid, and how long
    # non-money serial records are kept (money records are kept for good).
    terminal_key_grace_hours: float = Field(default=24.0, ge=0)
    terminal_serial_retention_days: int = Field(default=30, ge=30)
    # An unacknowledged alarm goes up one level each time this passes (at most 3 times).
    terminal_alarm_escalation_minutes: float = Field(default=15, gt=0)

    # TSP/1 gateway (PROTOCOL.md, docs/gateway.md). Without a certificate both channels
    # speak plaintext and admit loopback peers only, unless ``gateway_plaintext_lab``
    # (an operator's explicit lab switch) admits every address.
    gateway_host: str = "127.0.0.1"
    gateway_business_port: int = Field(default=7070, ge=0, le=65535)
    gateway_management_port: int = Field(default=7071, ge=0, le=65535)
    gateway_keepalive_s: int = Field(default=30, ge=1, le=3600)
    gateway_management_timeout_s: float = Field(default=10.0, gt=0)
    gateway_terminal_cache_s: float = Field(default=2.0, ge=0)
    gateway_tls_cert: Path | None = None
    gateway_tls_key: Path | None = None
    gateway_tls_client_ca: Path | None = None  # set: mutual TLS (client certificates)
    gateway_plaintext_lab: bool = False
    gateway_mac_failures_per_minute: int = Field(default=20, ge=1)
    # New connections per address per minute (0: no limit; a NAT may hide many kiosks),
    # and per terminal the requests per minute that are not part of paying (customer
    # queries, management; 0: no limit). docs/gateway.md, "Throttles".
    gateway_connections_per_address_per_minute: int = Field(default=600, ge=0)
    gateway_requests_per_terminal_per_minute: int = Field(default=300, ge=0)
    # The money path's group commit (docs/gateway.md "Money requests"): at most this many
    # payments per transaction; writer threads (SQLite always uses one: one writer).
    # 600, not 256: under overload a larger batch shares more index pages per commit —
    # SQLite saturation 2,467/s -> 2,792/s (means of four runs each; BENCHMARKS.md "Kiosk
    # load", session 6); PostgreSQL unchanged. Below saturation batches are small anyway.
    gateway_money_batch: int = Field(default=600, ge=1, le=5000)
    gateway_money_writers: int = Field(default=4, ge=1, le=64)
    # How long a writer waits for more payments after the first before writing (ms),
    # the writer threads and SQLite's inline writer alike. 0: none. With the front
    # processes on a slow 2-core VM, 5 ms cut the server's CPU at 1,000 requests/s by a
    # quarter without a measurable change in p99 or saturation rate (BENCHMARKS.md
    # "Kiosk load", session 5); before them it lowered the SQLite rate (1,195 -> 985/s).
    gateway_money_window_ms: float = Field(default=0.0, ge=0, le=50)
    # Let several ``serve --role gateway`` processes listen on the same ports (PostgreSQL
    # only; each process keeps its own sessions: docs/gateway.md, "Still to come").
    gateway_reuse_port: bool = False
    # Front processes for the TSP connections (gateway.processes, docs/gateway.md
    # "Processes"): 0 runs the whole gateway in the serve process; N > 0 starts N
    # processes that take the connections and hand payments to the money writer, which
    # stays in the serve process (on SQLite too: it stays the one writer).
    gateway_processes: int = Field(default=1, ge=0, le=64)

    # Kiosk payment limits (PROTOCOL.md): accepted note values in fen and the largest
    # payment; a payment outside them is recorded held, never refused.
    kiosk_note_values: tuple[int, ...] = (100, 500, 1000, 2000, 5000, 10000)
    kiosk_max_payment: int = Field(default=500_000, ge=1)

    # Outbox worker.
    outbox_max_attempts: int = 8
    outbox_backoff_seconds: float = 2.0
    outbox_batch: int = 100
    outbox_lease_seconds: float = 300.0
    outbox_backoff_max_seconds: float = 900.0
    outbox_retention_days: int = 7

    # Email through SMTP (no server configured by default: email then fails honestly in
    # production and is recorded by the development sender in demo mode).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "teleserve@localhost"
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_timeout_seconds: float = 10.0

    log_level: str = "INFO"
    log_json: bool = True

    seed_customers: int = Field(default=10_000, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("TELESERVE_CONFIG", "teleserve.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
            file_secret_settings,
        )

    @property
    def is_demo(self) -> bool:
        return self.mode is Mode.demo

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def insecure_defaults(self) -> list[str]:
        """Names of secrets still at their development default."""
        defaults = {
            "secret_key": DEV_SECRET_KEY,
            "data_key": DEV_DATA_KEY,
            "pepper": DEV_PEPPER,
        }
        return [name for name, value in defaults.items() if getattr(self, name) == value]

    def check(self) -> None:
        """Refuse to run production with development secrets, or settings that cannot
        work together."""
        if self.gateway_reuse_port and self.is_sqlite:
            raise RuntimeError(
                "TELESERVE_GATEWAY_REUSE_PORT is for several gateway processes on "
                "PostgreSQL; SQLite runs as one process"
            )
        if self.mode is Mode.production:
            weak = self.insecure_defaults()
            if weak:
                raise RuntimeError(
                    "production mode refuses default secrets: set "
                    + ", ".join(f"TELESERVE_{n.upper()}" for n in weak)
                    + " (or run with TELESERVE_MODE=demo for a demonstration)"
                )


_override: Settings | None = None


@lru_cache(maxsize=1)
def _load() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process-wide settings (tests may install their own with ``use_settings``)."""
    return _override if _override is not None else _load()


def use_settings(settings: Settings | None, **_: Any) -> None:
    """Install ``settings`` for this process (``None`` goes back to the environment)."""
    global _override
    _override = settings
    _load.cache_clear()
