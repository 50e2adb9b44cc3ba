"""An incremental frame decoder for a byte stream: partial reads, several frames in one
read, any garbage. It never raises on input; it hands out frames or a violation.

It does no I/O: the connection feeds it what it read and asks for the next frame, so the
same decoder serves asyncio streams, tests and the fuzzer.
"""

from __future__ import annotations

from teleserve.gateway.frame import (
    LENGTH_SIZE,
    BadLength,
    Frame,
    Malformed,
    Truncated,
    length_ok,
    read_length,
    split_payload,
)


class FrameDecoder:
    """Feed bytes with ``feed``; take frames with ``next`` until it returns ``None``.

    A bad length poisons the stream for good (nothing after it can be framed), so every
    later ``next`` returns the same ``BadLength``. A ``Malformed`` frame was still framed
    correctly: decoding could go on, though a server closes after answering it.
    """

    __slots__ = ("_buf", "_failed", "_start")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0
        self._failed: BadLength | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a frame."""
        return len(self._buf) - self._start

    @property
    def failed(self) -> BadLength | None:
        return self._failed

    def feed(self, data: bytes) -> None:
        if self._failed is None and data:
            self._buf += data

    def next(self) -> Frame | Malformed | BadLength | None:
        if self._failed is not None:
            return self._failed
        available = len(self._buf) - self._start
        if available < LENGTH_SIZE:
            return None
        length = read_length(bytes(self._buf[self._start : self._start + LENGTH_SIZE]))
        if not length_ok(length):
            self._failed = BadLength(length)
            self._buf = bytearray()
            self._start = 0
            return self._failed
        if available < LENGTH_SIZE + length:
            return None
        begin = self._start + LENGTH_SIZE
        payload = bytes(self._buf[begin : begin + length])
        self._start = begin + length
        self._compact()
        return split_payload(payload)

    def drain(self) -> list[Frame | Malformed | BadLength]:
        """Every complete frame buffered now (stops after a ``BadLength``)."""
        out: list[Frame | Malformed | BadLength] = []
        while (item := self.next()) is not None:
            out.append(item)
            if isinstance(item, BadLength):
                break
        return out

    def finish(self) -> Truncated | None:
        """The peer closed: a partial frame left behind is a truncation."""
        pending = self.buffered
        return Truncated(pending) if pending and self._failed is None else None

    def _compact(self) -> None:
        # Drop consumed bytes once they are the larger part of the buffer: amortised
        # O(n) over a stream instead of a memmove per frame.
        if self._start and self._start * 2 >= len(self._buf):
            del self._buf[: self._start]
            self._start = 0
