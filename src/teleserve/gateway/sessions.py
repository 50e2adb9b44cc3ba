"""Business-channel sessions, in memory per process (PROTOCOL.md, "Sessions and
connections").

A session belongs to one connection: it ends at SIGN_OFF, at the terminal's next
SIGN_ON, when its connection ends, or after 24 hours. The table maps each terminal to
the connection holding its session, so a SIGN_ON on a new connection can close the
older one. Nothing here is persisted: after a restart every terminal signs on again,
which it must do anyway because its connection is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from teleserve.gateway.checks import SessionView
from teleserve.gateway.mac import new_session_id

SESSION_LIFETIME_MS = 24 * 3600 * 1000


@dataclass(eq=False)
class Holder:
    """One business connection as the session table sees it: its session (if any) and
    how to close it from outside (a newer SIGN_ON of the same terminal)."""

    close: Callable[[], None]
    session: SessionView | None = None
    peer: str = ""


class SessionTable:
    """terminal_id → the connection holding its session; session ids are unique among
    live sessions. Used from the event loop only (no locking needed)."""

    def __init__(self) -> None:
        self._by_terminal: dict[str, Holder] = {}
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._by_terminal)

    def new_session_id(self) -> str:
        while True:
            session_id = new_session_id()
            if session_id not in self._ids:
                return session_id

    def sign_on(self, holder: Holder, session: SessionView) -> Holder | None:
        """Give ``holder`` the new ``session``; returns the older connection of the same
        terminal, which the caller closes (``None`` when there is none)."""
        older = self._by_terminal.get(session.terminal_id)
        if holder.session is not None:
            self._drop(holder)  # a SIGN_ON on a connection with a session replaces it
        if older is not None and older is not holder:
            self._drop(older)
        else:
            older = None
        holder.session = session
        self._by_terminal[session.terminal_id] = holder
        self._ids.add(session.session_id)
        return older

    def end(self, holder: Holder) -> None:
        """The holder's session ends (SIGN_OFF, connection closed)."""
        if holder.session is not None:
            self._drop(holder)

    def holder_of(self, terminal_id: str) -> Holder | None:
        return self._by_terminal.get(terminal_id)

    def _drop(self, holder: Holder) -> None:
        session = holder.session
        if session is None:
            return
        holder.session = None
        self._ids.discard(session.session_id)
        if self._by_terminal.get(session.terminal_id) is holder:
            del self._by_terminal[session.terminal_id]
