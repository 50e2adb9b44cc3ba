"""The audit log catches an edited row, a deleted row and a rewritten tail."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from teleserve.cli import app
from teleserve.core import audit
from teleserve.core.audit import AuditChainHead, AuditRecord, record_hash
from teleserve.core.db import read_engine


def _append(make_uow, count: int, subject: str = "S1") -> None:
    for i in range(count):
        with make_uow() as uow:
            uow.audit("thing.changed", "thing", subject, {"step": i, "名字": "张三"})
            uow.commit()


def _verify(engine, settings) -> audit.VerifyReport:
    return audit.verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)


def _checkpoint(engine, settings) -> None:
    audit.checkpoint(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)


def _record(engine, seq: int, subject: str = "S1"):
    with read_engine(engine).connect() as conn:
        return conn.execute(
            select(AuditRecord).where(AuditRecord.subject_id == subject, AuditRecord.seq == seq)
        ).one()


def test_intact_log_verifies(make_uow, engine, settings):
    _append(make_uow, 5)
    _append(make_uow, 3, subject="other")
    _checkpoint(engine, settings)
    report = _verify(engine, settings)
    assert report.ok, report.problems
    assert report.records == 8
    assert report.checkpoint is not None


def test_subjects_spread_over_chains(make_uow, engine, settings):
    with make_uow() as uow:
        for i in range(64):
            uow.audit("x", "thing", f"subject-{i}")
        uow.commit()
    with engine.connect() as conn:
        chains = set(conn.execute(select(AuditRecord.chain)).scalars())
    assert len(chains) > 8  # 64 subjects over 16 chains
    assert _verify(engine, settings).ok


def test_edited_row_is_named(make_uow, engine, settings):
    _append(make_uow, 5)
    target = _record(engine, 3)
    with engine.begin() as conn:
        conn.execute(
            update(AuditRecord).where(AuditRecord.id == target.id).values(action="thing.deleted")
        )
    report = _verify(engine, settings)
    assert not report.ok
    first = report.first_problem
    assert (first.kind, first.seq, first.record_id) == ("edited", 3, target.id)


def test_deleted_row_is_named(make_uow, engine, settings):
    _append(make_uow, 5)
    target = _record(engine, 2)
    with engine.begin() as conn:
        conn.execute(delete(AuditRecord).where(AuditRecord.id == target.id))
    first = _verify(engine, settings).first_problem
    assert first is not None and (first.kind, first.seq) == ("missing", 2)


def test_deleted_last_rows_caught_by_checkpoint(make_uow, engine, settings):
    _append(make_uow, 5)
    _checkpoint(engine, settings)
    last, prev = _record(engine, 5), _record(engine, 4)
    with engine.begin() as conn:
        conn.execute(delete(AuditRecord).where(AuditRecord.id == last.id))
        # a careful attacker also moves the head back
        conn.execute(
            update(AuditChainHead)
            .where(AuditChainHead.chain == last.chain)
            .values(seq=4, hash=prev.hash)
        )
    first = _verify(engine, settings).first_problem
    assert first is not None and (first.kind, first.seq) == ("missing", 5)


def test_rewritten_tail_is_caught_by_the_signed_checkpoint(make_uow, engine, settings):
    _append(make_uow, 6)
    _checkpoint(engine, settings)
    # Forge records 4..6 with consistent hashes, as someone with database access could.
    with engine.begin() as conn:
        rows = conn.execute(
            select(AuditRecord).where(AuditRecord.subject_id == "S1").order_by(AuditRecord.seq)
        ).all()
        prev = rows[2].hash
        for row in rows[3:]:
            forged = {
                "chain": row.chain,
                "seq": row.seq,
                "at": row.at,
                "actor_kind": row.actor_kind,
                "actor_id": "intruder",
                "action": row.action,
                "subject_type": row.subject_type,
                "subject_id": row.subject_id,
                "detail": row.detail,
                "prev_hash": prev,
            }
            prev = record_hash(**forged)
            conn.execute(
                update(AuditRecord)
                .where(AuditRecord.id == row.id)
                .values(actor_id="intruder", prev_hash=forged["prev_hash"], hash=prev)
            )
        conn.execute(
            update(AuditChainHead).where(AuditChainHead.chain == rows[0].chain).values(hash=prev)
        )
    report = _verify(engine, settings)
    assert not report.ok
    assert report.first_problem.kind == "rewritten"
    assert report.first_problem.seq == 6


def test_checkpoint_signed_by_another_key_is_refused(make_uow, engine, settings, tmp_path):
    _append(make_uow, 2)
    audit.checkpoint(engine, settings.audit_checkpoint_dir, tmp_path / "other.key")
    with pytest.raises(ValueError, match="another key"):
        _verify(engine, settings)


def test_cli_verify_names_the_broken_record(make_uow, engine, settings):
    _append(make_uow, 3)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "checkpoint", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    target = _record(engine, 2)
    with engine.begin() as conn:
        conn.execute(update(AuditRecord).where(AuditRecord.id == target.id).values(detail="{}"))
    result = runner.invoke(app, ["audit", "verify", "--json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert body["first_problem"]["record_id"] == target.id
    assert body["first_problem"]["kind"] == "edited"
