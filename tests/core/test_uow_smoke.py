from sqlalchemy import func, select, update

from teleserve.core.audit import AuditRecord, verify
from teleserve.core.outbox import OutboxMessage
from teleserve.core.sequences import next_number


def test_commit_writes_audit_and_outbox_together(make_uow, engine, settings):
    with make_uow() as uow:
        uow.audit("thing.created", "thing", "T1", {"name": "张三"})
        uow.emit("thing.created", {"id": "T1"})
        number = next_number(uow.connection, "SO")
        uow.commit()
    assert number.startswith("SO") and number.endswith("000001")
    with make_uow() as uow:
        uow.audit("thing.changed", "thing", "T1")
        uow.emit("thing.changed", {"id": "T1"})
        # no commit: both must vanish
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(AuditRecord)) == 1
        assert conn.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    report = verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)
    assert report.ok and report.records == 1


def test_savepoint_drops_what_its_block_queued(make_uow, engine):
    import pytest

    with make_uow() as uow:
        uow.audit("kept", "thing", "A")
        uow.emit("kept", {})
        with pytest.raises(ValueError), uow.savepoint():
            uow.audit("dropped", "thing", "B")
            uow.emit("dropped", {})
            raise ValueError("request failed")
        with uow.savepoint():
            uow.emit("kept.too", {})
        uow.commit()
    with engine.connect() as conn:
        actions = conn.execute(select(AuditRecord.action)).scalars().all()
        topics = sorted(conn.execute(select(OutboxMessage.topic)).scalars().all())
    assert actions == ["kept"]
    assert topics == ["kept", "kept.too"]


def test_the_connection_is_the_transactions_until_it_ends(make_uow, engine):
    """``uow.connection`` is asked for a dozen times a money batch and kept; a commit or a
    rollback ends its transaction, and the next statement gets the new one's."""
    with make_uow() as uow:
        first = uow.connection
        assert uow.connection is first and first.in_transaction()
        uow.emit("thing.created", {"id": "T1"})
        uow.commit()
        second = uow.connection
        assert second.in_transaction()
        second.execute(select(func.count()).select_from(OutboxMessage))
        uow.emit("thing.dropped", {"id": "T2"})
        uow.rollback()
        third = uow.connection
        assert third.in_transaction()
        uow.emit("thing.changed", {"id": "T1"})
        uow.commit()
    with engine.connect() as conn:
        topics = sorted(conn.execute(select(OutboxMessage.topic)).scalars().all())
    assert topics == ["thing.changed", "thing.created"]


def test_events_acknowledged_at_insert_are_written_done(make_uow, engine):
    from teleserve.core import outbox

    outbox.acknowledge_at_insert(["thing.unheard"])
    try:
        with make_uow() as uow:
            uow.emit("thing.unheard", {"id": "T1"})
            uow.emit("thing.heard", {"id": "T1"})
            uow.commit()
    finally:
        outbox.acknowledge_at_insert(())
    with make_uow() as uow:
        uow.emit("thing.unheard", {"id": "T2"})  # no longer acknowledged at insert
        uow.commit()
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.topic, OutboxMessage.status, OutboxMessage.done_at).order_by(
                OutboxMessage.created_at, OutboxMessage.topic
            )
        ).all()
    assert [(r.topic, r.status, r.done_at is not None) for r in rows] == [
        ("thing.heard", "pending", False),
        ("thing.unheard", "done", True),
        ("thing.unheard", "pending", False),
    ]


def test_a_locked_sqlite_database_is_sqlalchemys_error_and_frees_the_writer_lock(tmp_path):
    """BEGIN IMMEDIATE runs on the driver's cursor (not SQLAlchemy's execution context):
    a database locked by another process still raises SQLAlchemy's OperationalError, and
    the process's writer lock is given back for the next transaction."""
    import sqlite3
    import time

    import pytest
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from teleserve.core.db import make_engine
    from teleserve.core.uow import UnitOfWork

    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}")
    # After the engine's own connect hook (30 s): give up on the lock quickly.
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=50"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")  # another process's writer
    try:
        with pytest.raises(OperationalError, match="locked"), UnitOfWork(engine) as uow:
            uow.connection  # noqa: B018 (begins)
    finally:
        holder.rollback()
        holder.close()
    started = time.monotonic()
    with UnitOfWork(engine) as uow:
        assert uow.connection.exec_driver_sql("SELECT 1").scalar() == 1
        uow.commit()
    with UnitOfWork(engine, readonly=True) as uow:
        assert uow.connection.exec_driver_sql("SELECT 2").scalar() == 2
    assert time.monotonic() - started < 5  # not the writer lock's 30-s timeout
    engine.dispose()


def test_a_unit_of_work_on_a_held_connection(engine, settings):
    """``UnitOfWork(connection=held)``: the owner keeps the connection across units of
    work; each is its own transaction, committed or rolled back as with a pooled one; a
    Session is made only if asked for, and commits with the transaction."""
    import pytest

    from teleserve.core.uow import UnitOfWork

    def counts() -> tuple[int, int]:
        with engine.connect() as conn:
            return (
                conn.scalar(select(func.count()).select_from(AuditRecord)),
                conn.scalar(select(func.count()).select_from(OutboxMessage)),
            )

    held = engine.connect()
    try:
        with UnitOfWork(engine, connection=held) as uow:
            uow.audit("kept", "thing", "A")
            uow.emit("kept", {})
            assert uow.connection is held and uow._session is None
            uow.commit()
            # after a commit the next statement begins the next transaction
            uow.emit("kept.after", {})
            uow.commit()
        assert counts() == (1, 2)
        with UnitOfWork(engine, connection=held) as uow:
            uow.audit("dropped", "thing", "B")
            uow.connection.execute(OutboxMessage.__table__.delete())
            # no commit: rolled back on exit, the connection stays usable
        assert counts() == (1, 2) and not held.in_transaction()
        with UnitOfWork(engine, connection=held) as uow:
            with pytest.raises(ValueError), uow.savepoint():
                uow.emit("dropped", {})
                uow.connection.execute(OutboxMessage.__table__.delete())
                raise ValueError("one request failed")
            # the ORM on demand, inside the same transaction
            found = uow.session.scalars(select(OutboxMessage.topic)).all()
            assert sorted(found) == ["kept", "kept.after"]
            uow.session.execute(
                update(OutboxMessage).where(OutboxMessage.topic == "kept").values(attempts=7)
            )
            uow.emit("orm.too", {})
            uow.commit()
        assert counts() == (1, 3)
        with engine.connect() as conn:
            assert (
                conn.scalar(select(OutboxMessage.attempts).where(OutboxMessage.topic == "kept"))
                == 7
            )
        with pytest.raises(ValueError), UnitOfWork(engine, readonly=True, connection=held):
            pass
    finally:
        held.close()
    report = verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)
    assert report.ok and report.records == 1


def test_what_a_unit_of_work_loaded_is_detached_after_it(make_uow, engine):
    """Leaving the block closes the Session: objects it loaded are detached, so nothing
    lazy-loads (and holds a connection) past the unit of work."""
    from sqlalchemy import inspect

    with make_uow() as uow:
        uow.emit("thing.created", {"id": "T1"})
        uow.commit()
    with make_uow() as uow:
        message = uow.session.scalars(select(OutboxMessage)).one()
        assert inspect(message).persistent
    assert inspect(message).detached
    assert engine.pool.checkedout() == 0
