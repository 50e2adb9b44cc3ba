"""Input and output shapes of the terminals services.

Outputs are frozen copies, never ORM rows: an encrypted master key can never leak into a
template or a JSON response. The only shapes that carry a key in clear are
``RegisteredTerminal`` and ``RotatedKey`` (shown once, to whoever installs it) and
``TerminalAccess`` (the gateway's, never serialised).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from teleserve.terminals.models import DeviceMode, TerminalStatus


class TerminalSpec(BaseModel):
    """A terminal to register; ``site`` is the code of an org unit of level site or hall."""

    model_config = ConfigDict(frozen=True)

    terminal_id: str
    site: str
    name: str = ""  # defaults to the terminal id
    address: str = ""
    description: str = ""
    # A plain string: the service refuses an unknown mode with its own message.
    device_mode: str = DeviceMode.xfs4iot.value


class TerminalOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    terminal_id: str
    site_id: str
    org_path: str
    name: str
    address: str
    description: str
    status: TerminalStatus
    status_reason: str
    status_changed_at: datetime
    device_mode: DeviceMode
    software_version: str
    config_version: int
    created_at: datetime
    updated_at: datetime
    key_check_value: str | None = Field(
        default=None, description="check value of the current master key (none once ended)"
    )
    previous_key_valid_until: datetime | None = Field(
        default=None, description="end of a running rotation's grace period"
    )


class RegisteredTerminal(BaseModel):
    """A new terminal and its master key (hex), shown this once."""

    model_config = ConfigDict(frozen=True)

    terminal: TerminalOut
    master_key: str
    key_check_value: str


class RotatedKey(BaseModel):
    """A terminal's new master key (hex), shown this once, and until when the previous
    key is still accepted (``None``: it ended at once)."""

    model_config = ConfigDict(frozen=True)

    terminal_id: str
    master_key: str
    key_check_value: str
    previous_key_valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class TerminalAccess:
    """What the gateway's order of checks needs about a terminal, in one read.

    ``admitted`` false → ``10008`` (disabled, decommissioned, or simulated devices outside
    demo mode); ``out_of_service`` → ``10009`` for the serv_types it refuses;
    ``master_keys`` → the MAC check: the current key first, then the previous one while
    a rotation's grace period runs."""

    terminal_id: str
    status: TerminalStatus
    device_mode: DeviceMode
    admitted: bool
    master_keys: tuple[bytes, ...]
    org_path: str
    site_id: str

    @property
    def out_of_service(self) -> bool:
        return self.status is TerminalStatus.out_of_service

    def __repr__(self) -> str:  # keys never reach a log line
        return (
            f"TerminalAccess({self.terminal_id!r}, {self.status.value}, "
            f"admitted={self.admitted}, keys={len(self.master_keys)})"
        )
