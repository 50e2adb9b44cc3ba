"""Permissions and organisation scoping: a city's staff work their own region only."""

from __future__ import annotations

import pytest

from teleserve.core.errors import NotFound, PermissionDenied
from teleserve.numbers import service
from teleserve.numbers.models import NumberStatus

from .conftest import BJ, SZ, bj_number, card, staff, sz_number

SZ_AGENT = staff(SZ)
GD_AGENT = staff("/op/gd/")  # the province sees its cities


def test_city_staff_reserve_only_their_region(pool):
    assert pool.run(service.reserve, sz_number(1), "s:1", actor=SZ_AGENT).holder == "s:1"
    assert pool.run(service.reserve, sz_number(2), "s:1", actor=GD_AGENT).holder == "s:1"
    with pytest.raises(NotFound) as other_region:
        pool.run(service.reserve, bj_number(1), "s:1", actor=SZ_AGENT)
    with pytest.raises(NotFound) as missing:
        pool.run(service.reserve, "13912345678", "s:1", actor=SZ_AGENT)
    # An out-of-region number looks exactly like a missing one (same message shape).
    assert other_region.value.code == missing.value.code == "not_found"
    assert other_region.value.message == missing.value.message
    assert pool.read(service.get, bj_number(1)).status == NumberStatus.free


def test_out_of_region_reads_and_changes_are_not_found(pool):
    pool.run(service.reserve, bj_number(3), "s:bj")
    pool.run(service.assign, bj_number(4), holder="x:1", id_index=card(1), customer_id="C")
    for call in (
        lambda uow: service.get(uow, bj_number(1)),
        lambda uow: service.cancel_reservation(uow, bj_number(3), "s:bj"),
        lambda uow: service.assign(
            uow, bj_number(3), holder="s:bj", id_index=card(1), customer_id="C"
        ),
        lambda uow: service.release(uow, bj_number(4)),
    ):
        with pool.make_uow(SZ_AGENT) as uow, pytest.raises(NotFound):
            call(uow)
    assert pool.read(service.get, bj_number(4)).status == NumberStatus.assigned


def test_search_and_counts_are_scoped(pool):
    assert pool.read(service.search_free, BJ, actor=SZ_AGENT) == []
    everywhere = pool.read(service.search_free, "/", limit=100, actor=SZ_AGENT)
    assert {n.org_path for n in everywhere} == {SZ}
    assert sum(pool.read(service.count_by_status, "/", actor=SZ_AGENT).values()) == 100
    assert sum(pool.read(service.count_by_status, "/", actor=GD_AGENT).values()) == 100
    assert sum(pool.read(service.count_by_status, "/").values()) == 150


def test_sweeps_of_a_city_admin_stay_in_the_city(pool, frozen_clock):
    pool.run(service.reserve, sz_number(1), "s:1", minutes=1)
    pool.run(service.reserve, bj_number(1), "s:1", minutes=1)
    frozen_clock.advance(minutes=2)
    city_admin = staff(SZ, "numbers.admin")
    assert pool.run(service.release_expired, actor=city_admin).numbers == [sz_number(1)]
    assert pool.run(service.release_expired).numbers == [bj_number(1)]


PERMISSION_CASES = [
    ((), lambda uow: service.get(uow, sz_number(1))),
    (("numbers.read",), lambda uow: service.reserve(uow, sz_number(1), "s:1")),
    (("numbers.read",), lambda uow: service.cancel_reservation(uow, sz_number(1), "s:1")),
    (
        ("numbers.reserve",),
        lambda uow: service.assign(
            uow, sz_number(1), holder="s:1", id_index=card(1), customer_id="C"
        ),
    ),
    (("numbers.reserve",), lambda uow: service.release(uow, sz_number(1))),
    (("numbers.reserve",), lambda uow: service.search_free(uow, SZ)),
    (("numbers.reserve",), lambda uow: service.count_by_status(uow, SZ)),
    (("numbers.reserve",), lambda uow: service.count_for_id_card(uow, card(1))),
    (("numbers.assign",), lambda uow: service.release_expired(uow)),
    (("numbers.assign",), lambda uow: service.release_quarantined(uow)),
    (
        ("numbers.read",),
        lambda uow: service.update_grade_fees(uow, "aaaa", premium_fee=0, min_plan_fee=0),
    ),
    (("numbers.reserve",), lambda uow: service.list_grades(uow)),
    (("numbers.reserve",), lambda uow: service.classify(uow, sz_number(1))),
    (("numbers.reserve",), lambda uow: service.list_ranges(uow)),
]


def test_every_use_case_checks_its_permission(pool):
    for index, (permissions, call) in enumerate(PERMISSION_CASES):
        actor = staff(SZ, *permissions) if permissions else staff(SZ, "nothing")
        with pool.make_uow(actor) as uow, pytest.raises(PermissionDenied):
            call(uow)
            pytest.fail(f"case {index} ran without its permission")
