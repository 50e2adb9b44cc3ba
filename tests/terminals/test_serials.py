"""Serial records: insert-or-get in batches, markers, last_serial, the retention purge, and
concurrent duplicates racing on real connections."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from teleserve.core.settings import use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.catalog import MONEY_SERV_TYPES, SERV_TYPES
from teleserve.terminals import serials, service
from teleserve.terminals.models import RecordKind, serial_table
from teleserve.terminals.serials import SerialRecord

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def rec(
    serial: int,
    *,
    terminal_id: str = "K1",
    serv_type: int = 2001,
    body: bytes = b'{"amount":100}',
    err: str = "00000",
    answer: str = '{"status":"completed"}',
    at: datetime = T0,
    kind: RecordKind = RecordKind.answer,
) -> SerialRecord:
    return SerialRecord(
        terminal_id, serial, serv_type, serials.body_digest(body), err, answer, at, kind
    )


def claim(make_uow, records):
    with make_uow() as uow:
        claims = serials.insert_or_get(uow.connection, records)
        uow.commit()
    return claims


def stored(make_uow, keys):
    with make_uow(readonly=True) as uow:
        return serials.get_records(uow.connection, keys)


def test_first_insert_wins_and_later_ones_get_the_stored_record(make_uow):
    first = rec(1, answer='{"first":true}')
    [won] = claim(make_uow, [first])
    assert won.inserted and won.record == first
    resend = rec(1, answer='{"second":true}')
    [lost] = claim(make_uow, [resend])
    assert not lost.inserted and lost.record == first
    assert lost.record.matches(2001, serials.body_digest(b'{"amount":100}'))
    assert not lost.record.matches(2001, serials.body_digest(b'{"amount":200}'))
    assert not lost.record.matches(2002, serials.body_digest(b'{"amount":100}'))
    assert stored(make_uow, [(first.terminal_id, 1)]) == {("K1", 1): first}


def test_keys_the_caller_found_absent_are_inserted_without_a_second_read(make_uow):
    """The money batch reads its keys first (``absent=True``); should one be stored after
    all, nothing of the batch is written (on PostgreSQL the flag changes nothing)."""
    assert claim(make_uow, [rec(1)])[0].inserted
    with make_uow() as uow:
        claims = serials.insert_or_get(uow.connection, [rec(2), rec(3)], absent=True)
        uow.commit()
    assert [c.inserted for c in claims] == [True, True]
    with make_uow() as uow:
        if uow.dialect == "sqlite":
            with pytest.raises(RuntimeError, match="changed under"):
                serials.insert_or_get(uow.connection, [rec(4), rec(1)], absent=True)
        else:
            claims = serials.insert_or_get(uow.connection, [rec(4), rec(1)], absent=True)
            assert [c.inserted for c in claims] == [True, False]
    assert sorted(stored(make_uow, [("K1", n) for n in range(1, 5)])) == [
        ("K1", 1),
        ("K1", 2),
        ("K1", 3),
    ]


def test_a_batch_mixes_new_stored_and_repeated_keys_and_keeps_its_order(make_uow):
    claim(make_uow, [rec(5, answer="old")])
    batch = [
        rec(9, answer="nine"),
        rec(5, answer="five-again"),
        rec(7, terminal_id="K2", answer="k2-seven"),
        rec(9, answer="nine-repeated"),
        rec(7, answer="seven"),
    ]
    claims = claim(make_uow, batch)
    assert [(c.record.key, c.record.answer, c.inserted) for c in claims] == [
        (("K1", 9), "nine", True),
        (("K1", 5), "old", False),
        (("K2", 7), "k2-seven", True),
        (("K1", 9), "nine", False),  # a later duplicate in the batch gets the first
        (("K1", 7), "seven", True),
    ]
    assert set(stored(make_uow, [("K1", 5), ("K1", 7), ("K1", 9), ("K2", 7), ("K2", 9)])) == {
        ("K1", 5),
        ("K1", 7),
        ("K1", 9),
        ("K2", 7),
    }


def test_large_batches_cross_the_statement_chunks(make_uow):
    records = [rec(n, terminal_id=f"T{n % 3}") for n in range(1, 1301)]
    claims = claim(make_uow, records)
    assert all(c.inserted for c in claims)
    again = claim(make_uow, [rec(n, terminal_id=f"T{n % 3}", answer="x") for n in range(1, 1301)])
    assert not any(c.inserted for c in again)
    assert [c.record for c in again] == records
    assert claim(make_uow, []) == []


def test_the_answer_text_and_timestamps_come_back_exactly(make_uow):
    answer = '{"receipt":{"lines":["粤通电信","¥100.00"]},"status":"held","txn_id":"T1"}'
    record = rec(3, answer=answer, err="20005", at=T0 + timedelta(microseconds=123456))
    claim(make_uow, [record])
    assert stored(make_uow, [("K1", 3)])[("K1", 3)] == record


def test_last_serial_counts_markers_and_is_per_terminal(make_uow):
    with make_uow(readonly=True) as uow:
        assert serials.last_serial(uow.connection, "K1") == 0
    claim(
        make_uow,
        [
            rec(4),
            rec(999_999_999_999, terminal_id="K2"),
            rec(17, serv_type=2009, kind=RecordKind.reversal_marker, err="20008", answer="{}"),
        ],
    )
    with make_uow(readonly=True) as uow:
        assert serials.last_serial(uow.connection, "K1") == 17
        assert serials.last_serial(uow.connection, "K2") == 999_999_999_999


def test_a_marker_is_not_an_answer_and_is_replaced_by_the_late_payment(make_uow):
    marker = rec(8, serv_type=2009, kind=RecordKind.reversal_marker, err="20008", answer="{}")
    claim(make_uow, [marker])
    [found] = claim(make_uow, [rec(8)])
    assert not found.inserted and found.record.is_marker
    assert not found.record.matches(2001, serials.body_digest(b'{"amount":100}'))
    late = rec(8, answer='{"held_reason":"reversed_original","status":"held"}')
    with make_uow() as uow:
        assert serials.replace_markers(uow.connection, [late, rec(99)]) == 1
        uow.commit()
    assert stored(make_uow, [("K1", 8)])[("K1", 8)] == late
    with make_uow() as uow:  # an answer is never replaced
        assert serials.replace_markers(uow.connection, [rec(8, answer="other")]) == 0
        with pytest.raises(ValueError):
            serials.replace_markers(uow.connection, [marker])


def test_recordable_answers():
    assert serials.recordable("00000")
    assert serials.recordable("20005") and serials.recordable("30002")
    assert not serials.recordable("10003") and not serials.recordable("90002")


def test_money_serv_types_agree_with_the_codec():
    assert serials.KEPT_FOR_GOOD == MONEY_SERV_TYPES
    assert all(SERV_TYPES[code].state_changing for code in serials.KEPT_FOR_GOOD)


def test_purge_keeps_money_markers_recent_records_and_each_terminals_highest(
    make_uow, frozen_clock, settings
):
    old = frozen_clock.now() - timedelta(days=31)
    recent = frozen_clock.now() - timedelta(days=29)
    claim(
        make_uow,
        [
            rec(1, serv_type=1002, at=old),  # old OTP_SEND: purged
            rec(2, serv_type=2001, at=old),  # money: kept
            rec(3, serv_type=2009, kind=RecordKind.reversal_marker, at=old),  # marker: kept
            rec(4, serv_type=9002, at=old),  # old ALARM: purged
            rec(5, serv_type=3003, at=recent),  # recent: kept
            rec(1, terminal_id="K2", serv_type=9005, at=old),  # old, but K2's highest: kept
        ],
    )
    with make_uow() as uow:
        assert service.purge_serial_records(uow) == 2
        uow.commit()
    left = stored(make_uow, [("K1", n) for n in range(1, 6)] + [("K2", 1)])
    assert sorted(left) == [("K1", 2), ("K1", 3), ("K1", 5), ("K2", 1)]
    # The retention is the operator's setting (30 days at least).
    claim(
        make_uow,
        [
            rec(6, serv_type=1003, at=frozen_clock.now() - timedelta(days=45)),
            rec(7, serv_type=1003, at=frozen_clock.now()),
        ],
    )
    use_settings(settings.model_copy(update={"terminal_serial_retention_days": 60}))
    try:
        with make_uow() as uow:
            assert service.purge_serial_records(uow) == 0
    finally:
        use_settings(settings)
    with make_uow() as uow:
        assert service.purge_serial_records(uow) == 1
        uow.commit()
    assert ("K1", 6) not in stored(make_uow, [("K1", 6)])


# -- concurrency -------------------------------------------------------------------------


def _count(engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(serial_table)))


def test_a_resend_racing_its_original_gets_the_originals_answer(engine, make_uow):
    """The original holds its transaction open after inserting; the racing resend's insert
    waits (PostgreSQL: on the key; SQLite: on the write lock) and then gets the record."""
    inserted = threading.Event()
    results: dict[str, serials.Claim] = {}
    errors: list[BaseException] = []

    def original() -> None:
        try:
            with UnitOfWork(engine) as uow:
                [results["original"]] = serials.insert_or_get(
                    uow.connection, [rec(42, answer="original")]
                )
                inserted.set()
                time.sleep(0.5)  # the resend arrives while this is still uncommitted
                uow.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)
            inserted.set()

    def resend() -> None:
        inserted.wait(10)
        try:
            with UnitOfWork(engine) as uow:
                [results["resend"]] = serials.insert_or_get(
                    uow.connection, [rec(42, answer="resend")]
                )
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=original), threading.Thread(target=resend)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert results["original"].inserted and not results["resend"].inserted
    assert results["resend"].record.answer == "original"
    assert _count(engine) == 1


def test_if_the_original_rolls_back_the_resend_records_its_own(engine):
    inserted = threading.Event()
    results: dict[str, serials.Claim] = {}
    errors: list[BaseException] = []

    def original() -> None:
        try:
            with UnitOfWork(engine) as uow:
                serials.insert_or_get(uow.connection, [rec(43, answer="original")])
                inserted.set()
                time.sleep(0.3)
                uow.rollback()  # e.g. 90001: nothing recorded
        except BaseException as exc:
            errors.append(exc)
            inserted.set()

    def resend() -> None:
        inserted.wait(10)
        try:
            with UnitOfWork(engine) as uow:
                [results["resend"]] = serials.insert_or_get(
                    uow.connection, [rec(43, answer="resend")]
                )
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=original), threading.Thread(target=resend)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert results["resend"].inserted and results["resend"].record.answer == "resend"
    assert _count(engine) == 1


def test_many_writers_of_overlapping_batches_record_each_key_once(engine):
    """Eight writers, each a batch of the same 50 keys in its own order (plus its own
    keys): every shared key is inserted exactly once and everyone sees the same record."""
    writers = 8
    barrier = threading.Barrier(writers)
    claims: dict[int, list[serials.Claim]] = {}
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        shared = [rec(s, answer=f"writer-{n}") for s in range(1, 51)]
        shared = shared[n:] + shared[:n]  # different input orders: no deadlock either way
        own = [rec(1000 + n, answer=f"own-{n}")]
        barrier.wait()
        try:
            with UnitOfWork(engine) as uow:
                claims[n] = serials.insert_or_get(uow.connection, shared + own)
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    winners: dict[tuple[str, int], list[int]] = {}
    for n, made in claims.items():
        for c in made:
            if c.inserted:
                winners.setdefault(c.record.key, []).append(n)
    assert all(len(who) == 1 for who in winners.values())
    assert len(winners) == 50 + writers
    with UnitOfWork(engine, readonly=True) as uow:
        final = serials.get_records(uow.connection, winners)
    for made in claims.values():
        for c in made:
            assert c.record == final[c.record.key]
    assert _count(engine) == 50 + writers
