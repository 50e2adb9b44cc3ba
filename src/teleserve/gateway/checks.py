"""The order of checks (PROTOCOL.md) as pure functions.

length (close, no answer) → header format ``10001`` → terminal known ``10008`` → session
``10007`` → MAC ``10002`` → body is a JSON object ``10001`` → time window ``10006`` →
serv_type ``10004`` → [the serial record: the server, it needs the database] → out of
service ``10009`` → fields ``10005`` → business rules.

``check_request`` runs everything up to the serv_type; ``check_in_service`` and
``check_fields`` run after the server has consulted the serial record. Each answers the
first failure as a ``Refusal`` (which knows how to build its reply frame), a
``CloseSilently``, or an ``Accepted`` request.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from teleserve.gateway import errors
from teleserve.gateway.body import BodyViolation, parse_body
from teleserve.gateway.catalog import SERV_TYPES, SIGN_ON, Channel, ServType
from teleserve.gateway.errors import ERRORS
from teleserve.gateway.fields import validate_request
from teleserve.gateway.frame import (
    REQUEST,
    SUCCESS,
    ZERO_SESSION,
    BadLength,
    Echo,
    Frame,
    Malformed,
    Truncated,
)
from teleserve.gateway.mac import verify_mac
from teleserve.gateway.reply import error_reply

TIME_WINDOW_MS = 300_000


class TerminalState(Enum):
    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"
    DECOMMISSIONED = "decommissioned"


@dataclass(frozen=True, slots=True)
class TerminalView:
    """What the checks need to know about a terminal. ``master_keys`` holds the current
    key, then the previous one while a rotation's grace period runs."""

    terminal_id: str
    state: TerminalState
    master_keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SessionView:
    """The session a business connection holds (set by a successful SIGN_ON)."""

    terminal_id: str
    session_id: str
    key: bytes
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class CloseSilently:
    """Close the connection without answering (the frame could not be delimited)."""

    cause: BadLength | Truncated


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    echo: Echo
    # The key and session the reply is MAC'd with (ignored for the all-zero-MAC codes).
    key: bytes | None = None
    session_id: str = ZERO_SESSION
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def closes(self) -> bool:
        """The server closes the connection after sending this reply."""
        return ERRORS[self.code].closes

    def reply(self, now_ms: int) -> bytes:
        return error_reply(
            self.echo,
            self.code,
            self.details,
            key=self.key,
            session_id=self.session_id,
            now_ms=now_ms,
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    frame: Frame
    body: dict[str, Any]
    serv_type: ServType
    terminal: TerminalView
    channel: Channel
    # The key that authenticated the request: its answer is MAC'd with the same one.
    key: bytes
    # The session_id the answer carries (00000000 on the management channel; a SIGN_ON
    # answer carries the new session's id instead).
    session_id: str

    def refuse(self, code: str, details: Mapping[str, Any] | None = None) -> Refusal:
        return Refusal(code, self.frame.echo, self.key, self.session_id, dict(details or {}))


Outcome = Accepted | Refusal | CloseSilently


def _request_rule_broken(frame: Frame, channel: Channel) -> str | None:
    """The header field that breaks a request-only rule, or ``None``."""
    h = frame.header
    if h.direction != REQUEST:
        return "direction"
    if not h.last:
        return "end_flag"  # requests are always one frame
    if h.err_number != SUCCESS:
        return "err_number"
    if (channel is Channel.MANAGEMENT or h.serv_type == SIGN_ON) and h.session_id != ZERO_SESSION:
        return "session_id"
    return None


def check_request(
    item: Frame | Malformed | BadLength | Truncated,
    *,
    channel: Channel,
    lookup: Callable[[str], TerminalView | None],
    session: SessionView | None,
    now_ms: int,
    served: Container[int] = SERV_TYPES,
    window_ms: int = TIME_WINDOW_MS,
) -> Outcome:
    """Run the checks up to the serv_type on one decoded request.

    ``lookup`` finds a terminal by id (``None``: unknown); ``session`` is the one the
    connection holds; ``served`` the serv_types this server answers (the rest are
    ``10004``, like an unknown one).
    """
    if isinstance(item, BadLength | Truncated):
        return CloseSilently(item)
    if isinstance(item, Malformed):
        return Refusal(errors.MALFORMED, item.echo, details={"field": item.field})
    frame, h = item, item.header
    broken = _request_rule_broken(frame, channel)
    if broken is not None:
        return Refusal(errors.MALFORMED, frame.echo, details={"field": broken})

    terminal = lookup(h.terminal_id)
    if terminal is None or terminal.state is TerminalState.DECOMMISSIONED:
        return Refusal(errors.UNKNOWN_TERMINAL, frame.echo)

    keys: tuple[bytes, ...]
    session_id = ZERO_SESSION
    if channel is Channel.MANAGEMENT or h.serv_type == SIGN_ON:
        keys = terminal.master_keys
    else:
        if (
            session is None
            or session.terminal_id != h.terminal_id
            or session.session_id != h.session_id
            or now_ms >= session.expires_at_ms
        ):
            return Refusal(errors.NO_SESSION, frame.echo)
        keys = (session.key,)
        session_id = session.session_id

    key = verify_mac(frame, keys)
    if key is None:
        return Refusal(errors.BAD_MAC, frame.echo)

    body = parse_body(frame.body)
    if isinstance(body, BodyViolation):
        details = {"field": "body", "reason": body.reason}
        return Refusal(errors.MALFORMED, frame.echo, details=details)

    if abs(h.timestamp_ms - now_ms) > window_ms:
        return Refusal(errors.CLOCK_SKEW, frame.echo, key, session_id, {"server_time_ms": now_ms})

    spec = SERV_TYPES.get(h.serv_type)
    if spec is None or spec.channel is not channel or h.serv_type not in served:
        return Refusal(errors.UNKNOWN_SERV_TYPE, frame.echo, key, session_id)

    return Accepted(frame, body, spec, terminal, channel, key, session_id)


def check_in_service(accepted: Accepted) -> Refusal | None:
    """``10009`` for what an out-of-service terminal may not do (it may still sign on,
    report, drain its journal and take the money it already stacked)."""
    if (
        accepted.terminal.state is TerminalState.OUT_OF_SERVICE
        and accepted.serv_type.refused_out_of_service
    ):
        return accepted.refuse(errors.OUT_OF_SERVICE)
    return None


def check_fields(accepted: Accepted) -> Refusal | None:
    """``10005`` with ``details.fields`` when the body does not fit its serv_type."""
    bad = validate_request(accepted.serv_type.code, accepted.body)
    if bad:
        return accepted.refuse(errors.INVALID_FIELDS, {"fields": bad})
    return None
