"""free → reserved → assigned → quarantine → free, with expiry, sweeps and 一证五号."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from teleserve.core.errors import Conflict, NotFound, ValidationError
from teleserve.numbers import service
from teleserve.numbers.models import NumberStatus, PoolNumber

from .conftest import BJ, SZ, audit_actions, card, outbox, staff, sz_number

N = sz_number(13)  # an ordinary-priced number of the Shenzhen pool ("no_four")
ALICE, BOB = "session:alice", "session:bob"


def _stored(engine, value):
    with engine.connect() as conn:
        return conn.execute(select(PoolNumber).where(PoolNumber.value == value)).one()


def _assign(pool, value, holder=ALICE, id_index=None, actor=None, **kwargs):
    arguments = {
        "holder": holder,
        "id_index": id_index or card(1),
        "customer_id": "C1",
        "subscription_ref": "S1",
        **kwargs,
    }
    if actor is None:
        return pool.run(service.assign, value, **arguments)
    return pool.run(service.assign, value, actor=actor, **arguments)


# -- reserve -----------------------------------------------------------------------------


def test_reserve_holds_for_the_configured_minutes(pool, engine, frozen_clock):
    reserved = pool.run(service.reserve, N, ALICE)
    assert reserved.status == NumberStatus.reserved and reserved.holder == ALICE
    assert reserved.reserved_until == frozen_clock.now() + timedelta(minutes=30)
    assert _stored(engine, N).status == "reserved"
    [(_action, subject, detail)] = audit_actions(engine, "numbers.reserved")
    assert subject == N and json.loads(detail)["holder"] == ALICE


def test_reserve_with_explicit_minutes_and_renewal_by_the_holder(pool, frozen_clock):
    pool.run(service.reserve, N, ALICE, minutes=5)
    frozen_clock.advance(minutes=4)
    renewed = pool.run(service.reserve, N, ALICE, minutes=10)
    assert renewed.reserved_until == frozen_clock.now() + timedelta(minutes=10)


def test_reserve_taken_number_is_a_conflict(pool, engine):
    pool.run(service.reserve, N, ALICE)
    with pytest.raises(Conflict) as caught:
        pool.run(service.reserve, N, BOB)
    assert caught.value.code == "reserved"
    assert "138****0013" in caught.value.render("en")  # masked in messages
    assert _stored(engine, N).holder == ALICE


def test_reserve_assigned_number_is_a_conflict(pool):
    _assign(pool, N, holder="staff:x")  # the system actor may assign straight from free
    with pytest.raises(Conflict) as caught:
        pool.run(service.reserve, N, BOB)
    assert caught.value.code == "unavailable"


def test_reserve_malformed_number(pool):
    for bad in ["1380010001", "abc", "14000000000", ""]:
        with pytest.raises(ValidationError):
            pool.run(service.reserve, bad, ALICE)
            pytest.fail(f"accepted {bad!r}")


def test_reserve_unknown_number(pool):
    with pytest.raises(NotFound) as caught:
        pool.run(service.reserve, "13912345678", ALICE)
    assert caught.value.render("zh-CN") == "号码 139****5678 不存在"


def test_reserve_bad_holder_or_minutes_changes_nothing(pool, engine):
    bad_inputs = [
        ("", None),
        ("has space", None),
        (" leading", None),
        ("trailing ", None),
        ("tab\there", None),
        ("wide\u3000space", None),
        ("x" * 101, None),
        (ALICE, 0),
        (ALICE, 10_081),
        (ALICE, True),
        (ALICE, 1.5),
    ]
    for holder, minutes in bad_inputs:
        with pytest.raises(ValidationError):
            pool.run(service.reserve, N, holder, minutes=minutes)
            pytest.fail(f"accepted {holder!r}, {minutes!r}")
    assert _stored(engine, N).status == "free"


def test_expired_reservation_is_free_again_lazily(pool, engine, frozen_clock):
    pool.run(service.reserve, N, ALICE)
    frozen_clock.advance(minutes=30)
    assert pool.read(service.get, N).status == NumberStatus.free
    assert pool.read(service.get, N).holder is None
    assert N in [n.value for n in pool.read(service.search_free, SZ, limit=100)]
    taken = pool.run(service.reserve, N, BOB)
    assert taken.holder == BOB
    detail = json.loads(audit_actions(engine, "numbers.reserved")[-1][2])
    assert detail["lapsed_holder"] == ALICE


def test_release_expired_sweep(pool, engine, frozen_clock):
    for n in (1, 2, 3):
        pool.run(service.reserve, sz_number(n), ALICE, minutes=10)
    pool.run(service.reserve, sz_number(5), ALICE, minutes=60)
    frozen_clock.advance(minutes=11)
    swept = pool.run(service.release_expired)
    assert swept.numbers == [sz_number(1), sz_number(2), sz_number(3)]
    assert [_stored(engine, sz_number(n)).status for n in (1, 2, 3, 5)] == [
        "free",
        "free",
        "free",
        "reserved",
    ]
    assert _stored(engine, sz_number(1)).holder is None
    [(_a, _s, detail)] = audit_actions(engine, "numbers.reservations_expired")
    assert json.loads(detail)["count"] == 3
    assert pool.run(service.release_expired).count == 0  # nothing new: no audit record
    assert len(audit_actions(engine, "numbers.reservations_expired")) == 1


def test_cancel_reservation(pool, engine):
    pool.run(service.reserve, N, ALICE)
    with pytest.raises(Conflict) as caught:
        pool.run(service.cancel_reservation, N, BOB)
    assert caught.value.code == "reserved"
    cancelled = pool.run(service.cancel_reservation, N, ALICE)
    assert cancelled.status == NumberStatus.free and _stored(engine, N).holder is None
    with pytest.raises(Conflict) as caught:
        pool.run(service.cancel_reservation, N, ALICE)
    assert caught.value.code == "not_reserved"
    assert len(audit_actions(engine, "numbers.reservation_cancelled")) == 1


# -- assign ------------------------------------------------------------------------------


def test_assign_from_own_reservation(pool, engine, frozen_clock):
    agent = staff(SZ)
    pool.run(service.reserve, N, ALICE, actor=agent)
    assigned = _assign(pool, N, actor=agent)
    assert assigned.status == NumberStatus.assigned
    assert (assigned.customer_id, assigned.subscription_ref) == ("C1", "S1")
    assert assigned.assigned_at == frozen_clock.now() and assigned.reserved_until is None
    row = _stored(engine, N)
    assert row.id_index == card(1) and row.holder == ALICE
    [event] = outbox(engine, "numbers.assigned")
    assert event["number"] == N and event["customer_id"] == "C1"
    assert event["grade_code"] == "no_four"
    assert len(audit_actions(engine, "numbers.assigned")) == 1


def test_assign_with_another_holders_reservation(pool, engine):
    agent = staff(SZ)
    pool.run(service.reserve, N, ALICE, actor=agent)
    with pytest.raises(Conflict) as caught:
        _assign(pool, N, holder=BOB, actor=agent)
    assert caught.value.code == "reserved"
    # Not even an admin may take a number another holder reserved.
    with pytest.raises(Conflict):
        _assign(pool, N, holder=BOB)
    assert _stored(engine, N).status == "reserved"
    assert outbox(engine, "numbers.assigned") == []


def test_assign_from_free_needs_numbers_admin(pool, engine):
    with pytest.raises(Conflict) as caught:
        _assign(pool, N, actor=staff(SZ))
    assert caught.value.code == "not_reserved"
    admin = staff(SZ, "numbers.assign", "numbers.admin", "numbers.read")
    assert _assign(pool, N, actor=admin).status == NumberStatus.assigned


def test_assign_after_own_reservation_expired(pool, frozen_clock):
    agent = staff(SZ)
    pool.run(service.reserve, N, ALICE, actor=agent)
    frozen_clock.advance(minutes=31)
    with pytest.raises(Conflict) as caught:
        _assign(pool, N, actor=agent)
    assert caught.value.code == "reservation_expired"
    assert "重新预占" in caught.value.render("zh-CN")


def test_assign_bad_input_changes_nothing(pool, engine):
    pool.run(service.reserve, N, ALICE)
    bad_inputs = [
        {"id_index": "110101199001011234"},  # the raw ID number instead of its blind index
        {"id_index": "A" * 64},
        {"customer_id": ""},
        {"customer_id": "x" * 33},
        {"subscription_ref": "x" * 65},
        {"holder": " "},
    ]
    for bad in bad_inputs:
        with pytest.raises(ValidationError):
            _assign(pool, N, **bad)
            pytest.fail(f"accepted {bad}")
    assert _stored(engine, N).status == "reserved"


def test_assign_unknown_and_malformed(pool):
    with pytest.raises(NotFound):
        _assign(pool, "13912345678")
    with pytest.raises(ValidationError):
        _assign(pool, "139123")


def test_sixth_number_on_one_id_card_is_refused(pool, engine):
    for n in range(5):
        _assign(pool, sz_number(20 + n), holder="staff:x")
    assert pool.read(service.count_for_id_card, card(1)) == 5
    with pytest.raises(Conflict) as caught:
        _assign(pool, sz_number(30), holder="staff:x")
    assert caught.value.code == "id_card_limit"
    assert "一证五号" in caught.value.render("zh-CN")
    assert _stored(engine, sz_number(30)).status == "free"
    # The limit is per card and operator-wide: another card is fine, in another city too.
    _assign(pool, sz_number(30), holder="staff:x", id_index=card(2))
    with pytest.raises(Conflict):
        _assign(pool, "13901000001", holder="staff:x")
    # Releasing one number makes room again.
    pool.run(service.release, sz_number(20))
    assert pool.read(service.count_for_id_card, card(1)) == 4
    _assign(pool, "13901000001", holder="staff:x")
    assert pool.read(service.count_for_id_card, card(1)) == 5


def test_id_card_limit_follows_the_setting(pool, settings):
    settings.numbers_per_id_card = 1
    _assign(pool, sz_number(20), holder="staff:x")
    with pytest.raises(Conflict):
        _assign(pool, sz_number(21), holder="staff:x")


# -- release and quarantine --------------------------------------------------------------


def test_release_to_quarantine_and_reuse_after_90_days(pool, engine, frozen_clock):
    _assign(pool, N, holder="staff:x")
    released = pool.run(service.release, N)
    assert released.status == NumberStatus.quarantine
    assert released.quarantine_until == frozen_clock.now() + timedelta(days=90)
    assert released.customer_id is None
    row = _stored(engine, N)
    assert (row.id_index, row.customer_id, row.subscription_ref) == (None, None, None)
    [event] = outbox(engine, "numbers.released")
    assert event["number"] == N and event["customer_id"] == "C1"
    assert N not in [n.value for n in pool.read(service.search_free, SZ, limit=100)]
    frozen_clock.advance(days=89)
    with pytest.raises(Conflict) as caught:
        pool.run(service.reserve, N, BOB)
    assert caught.value.code == "unavailable"
    assert pool.run(service.release_quarantined).count == 0
    frozen_clock.advance(days=1)
    assert pool.read(service.get, N).status == NumberStatus.free  # lazily, before the sweep
    assert pool.run(service.reserve, N, BOB).holder == BOB


def test_release_quarantined_sweep(pool, engine, frozen_clock):
    for n in (20, 21):
        _assign(pool, sz_number(n), holder="staff:x")
        pool.run(service.release, sz_number(n))
    frozen_clock.advance(days=90)
    swept = pool.run(service.release_quarantined)
    assert swept.numbers == [sz_number(20), sz_number(21)]
    row = _stored(engine, sz_number(20))
    assert (row.status, row.quarantine_until) == ("free", None)
    assert len(audit_actions(engine, "numbers.quarantine_ended")) == 1


def test_release_needs_an_assigned_number(pool):
    with pytest.raises(Conflict) as caught:
        pool.run(service.release, N)
    assert caught.value.code == "not_assigned"
    pool.run(service.reserve, N, ALICE)
    with pytest.raises(Conflict):
        pool.run(service.release, N)
    _assign(pool, N)
    pool.run(service.release, N)
    with pytest.raises(Conflict):  # twice
        pool.run(service.release, N)
    with pytest.raises(NotFound):
        pool.run(service.release, "13912345678")


# -- search and counts -------------------------------------------------------------------


def test_search_free_filters(pool):
    def values(**kwargs):
        return [n.value for n in pool.read(service.search_free, SZ, **kwargs)]

    assert len(values()) == 20  # the default limit
    assert values(limit=3) == [sz_number(0), sz_number(1), sz_number(2)]
    assert values(ends_with="99", limit=100) == [sz_number(99)]
    assert values(contains="0010007", limit=100) == [sz_number(n) for n in range(70, 80)]
    assert values(pattern="1380010??88") == [sz_number(88)]
    assert values(pattern="138*5") == [sz_number(n) for n in range(5, 100, 10)]
    assert values(grade="aabb", limit=100) == [sz_number(11 * n) for n in range(1, 10)]
    assert values(grade="aaaa") == [sz_number(0)]
    # A 4 among the last 8 digits: 04, 14, …, 94 and 40-49, less 0044 (AABB).
    assert len(values(grade="ordinary", limit=100)) == 18
    assert values(kind="fixed") == []
    assert values(after=sz_number(97)) == [sz_number(98), sz_number(99)]
    assert values(ends_with="99", contains="38") == [sz_number(99)]


def test_search_free_skips_taken_numbers_and_shows_fees(pool):
    pool.run(service.reserve, sz_number(0), ALICE)
    _assign(pool, sz_number(1), holder="staff:x")
    found = pool.read(service.search_free, SZ, limit=2)
    assert [n.value for n in found] == [sz_number(2), sz_number(3)]
    [aabb] = pool.read(service.search_free, SZ, grade="aabb", limit=1)
    assert (aabb.premium_fee, aabb.min_plan_fee) == (50_000, 8_800)
    assert pool.read(service.search_free, SZ, grade="aaaa") == []  # 0000 is reserved


def test_search_free_bad_input(pool):
    bad_inputs = [
        {"limit": 0},
        {"limit": 101},
        {"pattern": "138%"},
        {"contains": "1a"},
        {"ends_with": "_"},
        {"grade": "nope"},
        {"kind": "satellite"},
        {"after": "x"},
    ]
    for bad in bad_inputs:
        with pytest.raises(ValidationError):
            pool.read(service.search_free, SZ, **bad)
            pytest.fail(f"accepted {bad}")
    with pytest.raises(ValidationError):
        pool.read(service.search_free, "/op/gd/sz")  # a region path ends with "/"


def test_count_by_status(pool, frozen_clock):
    pool.run(service.reserve, sz_number(1), ALICE, minutes=5)
    pool.run(service.reserve, sz_number(2), ALICE, minutes=60)
    _assign(pool, sz_number(3), holder="staff:x")
    _assign(pool, sz_number(4), holder="staff:x")
    pool.run(service.release, sz_number(4))
    frozen_clock.advance(minutes=10)  # the first reservation lapses: it counts as free
    counts = pool.read(service.count_by_status, SZ)
    assert counts == {
        NumberStatus.free: 97,
        NumberStatus.reserved: 1,
        NumberStatus.assigned: 1,
        NumberStatus.quarantine: 1,
    }
    assert pool.read(service.count_by_status, "/op/")[NumberStatus.free] == 147
    assert pool.read(service.count_by_status, BJ)[NumberStatus.free] == 50
    assert sum(pool.read(service.count_by_status, "/nowhere/").values()) == 0
