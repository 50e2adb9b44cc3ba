"""The link between gateway front processes and the money writer process
(``gateway.processes``): messages over a Unix stream socket.

A message is a tuple whose first item says what it is (``PAY``, ``ANSWER``,
``SIGNED_ON``). Messages queued in one turn of the event loop travel together: one
length-prefixed pickle of their list, one write, one read — under load a turn queues tens
of payments, and a write per payment would cost a system call each on both sides.

Pickle is safe here only because both ends are processes of one gateway: the socket lies
in a directory only the gateway's user can enter (``processes.private_socket_path``), and
nothing from a terminal is unpickled that it did not first pass through a front process's
checks (MAC, session, fields) and its own pickling.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

from teleserve.gateway.catalog import SERV_TYPES, Channel
from teleserve.gateway.checks import Accepted, TerminalState, TerminalView
from teleserve.gateway.directory import TerminalEntry
from teleserve.gateway.frame import Frame, Header
from teleserve.terminals.models import DeviceMode

PAY = 1  # front → writer: (PAY, request id, packed job)
ANSWER = 2  # writer → front: (ANSWER, request id, outcome)
SIGNED_ON = 3  # both ways: (SIGNED_ON, terminal_id, session_id) — the others close theirs

_LENGTH = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024  # a sanity bound: a batch of 5,000 answers is ~20 MiB

Message = tuple[Any, ...]


class Link:
    """One end of the link: ``send`` queues, the loop's next turn writes the queue once;
    ``receive`` returns the next list of messages (``IncompleteReadError`` at the end)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._queued: list[Message] = []

    def send(self, message: Message) -> None:
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(message)

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        if self._writer.is_closing():
            return
        data = pickle.dumps(queued, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> list[Message]:
        (length,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
        if length > MAX_MESSAGE:
            raise ConnectionError(f"a link message of {length} bytes")
        data = await self._reader.readexactly(length)
        messages: list[Message] = pickle.loads(data)  # noqa: S301 (a private socket: above)
        return messages

    def close(self) -> None:
        self._writer.close()


# -- a payment job as it crosses the link ------------------------------------------
# Plain tuples rather than the dataclasses themselves: a pickled dataclass carries its
# class reference and field names, several times the bytes of its values, and the writer
# process is the one that runs short of CPU.


def pack_job(accepted: Accepted, entry: TerminalEntry) -> tuple[Any, ...]:
    frame = accepted.frame
    h = frame.header
    view = entry.view
    return (
        (
            h.terminal_id,
            h.serial,
            h.serv_type,
            h.direction,
            h.last,
            h.err_number,
            h.timestamp_ms,
            h.session_id,
        ),
        frame.body,
        frame.mac,
        accepted.body,
        accepted.serv_type.code,
        accepted.channel.value,
        accepted.key,
        accepted.session_id,
        (view.terminal_id, view.state.value, view.master_keys),
        (entry.org_path, entry.device_mode.value, entry.site_id),
    )


def unpack_job(packed: tuple[Any, ...]) -> tuple[Accepted, TerminalEntry]:
    header, body_bytes, mac, body, code, channel, key, session_id, view, site = packed
    terminal_view = TerminalView(view[0], TerminalState(view[1]), view[2])
    accepted = Accepted(
        frame=Frame(Header(*header), body_bytes, mac),
        body=body,
        serv_type=SERV_TYPES[code],
        terminal=terminal_view,
        channel=Channel(channel),
        key=key,
        session_id=session_id,
    )
    entry = TerminalEntry(terminal_view, site[0], DeviceMode(site[1]), site[2])
    return accepted, entry
