"""``core.wal``: the serve process's own checkpoints of SQLite's WAL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from teleserve.core.wal import WalCheckpointer, start_checkpointer


def _writer(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies
    connection.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    return connection


def _write(connection: sqlite3.Connection, rows: int) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,) for _ in range(rows)])
    connection.execute("COMMIT")


def test_one_pass_copies_what_the_writer_left_in_the_wal(tmp_path):
    path = tmp_path / "t.db"
    writer = _writer(path)
    _write(writer, 500)
    checkpointer = WalCheckpointer(str(path), interval_s=1)
    reader = sqlite3.connect(path, isolation_level=None)
    copied = checkpointer.checkpoint_once(reader)
    assert copied > 0
    assert checkpointer.checkpoint_once(reader) == copied  # nothing new: the same count
    # The WAL starts over at the writer's next transaction: everything was copied.
    _write(writer, 1)
    _, frames, _ = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames < copied
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (501,)


def test_the_thread_keeps_copying_while_the_writer_writes(tmp_path):
    path = tmp_path / "t.db"
    writer = _writer(path)
    checkpointer = start_checkpointer(str(path), interval_ms=5)
    assert checkpointer is not None
    try:
        for _ in range(20):
            _write(writer, 100)
        deadline = time.monotonic() + 10
        while checkpointer.pages_copied == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.pages_copied > 0
    finally:
        checkpointer.stop()
    assert not checkpointer._thread.is_alive()


def test_nothing_to_checkpoint_starts_no_thread(tmp_path):
    assert start_checkpointer(None, interval_ms=100) is None  # PostgreSQL
    assert start_checkpointer(":memory:", interval_ms=100) is None
    assert start_checkpointer(str(tmp_path / "t.db"), interval_ms=0) is None
