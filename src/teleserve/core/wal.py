"""SQLite's WAL checkpoints, off the writers' threads (the serve process on SQLite).

Why: in WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them
back into the database file and fsyncs it. By default the connection whose commit takes
the WAL past ``wal_autocheckpoint`` pages (``core.db``: 10,000) runs that checkpoint
inside its commit — on the money path, the writer that holds a batch of kiosk payments
waiting for their answers. On the 2-core VM that made one commit in ten take 30–50 ms
instead of ~5 (BENCHMARKS.md, "Kiosk load", session 6), which is what the p99 at 1,000
terminals × 1/s saw.

``WalCheckpointer`` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection and thread of
its own, again and again while there is something to copy. A passive checkpoint never
waits for a writer and never makes one wait: writers go on appending meanwhile, and
SQLite releases the GIL while it copies. It cannot finish a WAL that grows under it, so
the writers' own auto-checkpoint stays as the finisher; it then finds nearly every page
already copied (frames since the last pass only) and the WAL starts over from its
beginning at the next write.

Nothing here is needed for correctness: stop it, or never start it, and SQLite's
auto-checkpoint does all the work as before.
"""

from __future__ import annotations

import sqlite3
import threading

from teleserve.core.logging import get_logger

log = get_logger(__name__)

# After a pass that copied pages, look again soon: the WAL the finisher meets is then
# small. After a pass with nothing to copy, the idle interval.
_BUSY_PAUSE_S = 0.01


class WalCheckpointer:
    """A daemon thread checkpointing ``path`` (an SQLite file in WAL mode) passively."""

    def __init__(self, path: str, *, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self.passes = 0
        self.pages_copied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def checkpoint_once(self, connection: sqlite3.Connection) -> int:
        """One passive pass; returns how many WAL frames it copied."""
        busy, wal_frames, done = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
        if busy or wal_frames < 0:  # not in WAL mode, or the checkpoint lock was taken
            return 0
        return int(done)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error:
            log.exception("sqlite.checkpointer_failed", path=self.path)
            return
        # The checkpoint fsyncs the WAL before copying and the database file after, as
        # the writers' own would (synchronous=FULL).
        connection.execute("PRAGMA synchronous=FULL")
        copied_before = 0
        try:
            while not self._stop.is_set():
                try:
                    done = self.checkpoint_once(connection)
                except sqlite3.Error:
                    log.exception("sqlite.checkpoint_failed", path=self.path)
                    self._stop.wait(self.interval_s)
                    continue
                # ``done`` counts the WAL's frames copied so far, this pass or before;
                # it starts again from 0 when the WAL does.
                progressed = done != copied_before and done > 0
                if progressed:
                    self.pages_copied += done - copied_before if done > copied_before else done
                copied_before = done
                self._stop.wait(_BUSY_PAUSE_S if progressed else self.interval_s)
        finally:
            connection.close()
            log.info(
                "sqlite.checkpointer_stopped", passes=self.passes, frames_copied=self.pages_copied
            )


def start_checkpointer(database: str | None, *, interval_ms: float) -> WalCheckpointer | None:
    """A running checkpointer for the SQLite file ``database``; ``None`` for an in-memory
    database, PostgreSQL (``database`` None) or ``interval_ms`` 0."""
    if not database or database == ":memory:" or interval_ms <= 0:
        return None
    checkpointer = WalCheckpointer(database, interval_s=interval_ms / 1000)
    checkpointer.start()
    return checkpointer
