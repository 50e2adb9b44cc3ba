from sqlalchemy import func, select

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
