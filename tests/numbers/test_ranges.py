"""Number ranges and grades: creation in batches, validation, audit, scoping."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.numbers import service
from teleserve.numbers.models import NumberRange, NumberStatus, PoolNumber

from .conftest import BJ, SZ, audit_actions, count_rows, staff


def test_pool_fixture_ranges_are_graded_and_free(pool, engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                PoolNumber.value, PoolNumber.grade_code, PoolNumber.status, PoolNumber.org_path
            ).order_by(PoolNumber.value)
        ).all()
    assert len(rows) == 150
    sz = {v: g for v, g, _s, o in rows if o == SZ}
    assert len(sz) == 100 and min(sz) == "13800100000" and max(sz) == "13800100099"
    assert {s for _v, _g, s, _o in rows} == {NumberStatus.free}
    assert sz["13800100000"] == "aaaa"
    assert sz["13800100011"] == "aabb"
    assert sz["13800100004"] == "ordinary"
    assert sz["13800100013"] == "no_four"


def test_create_range_result_audit_once_per_range(make_uow, engine, frozen_clock):
    with make_uow() as uow:
        service.install_default_grades(uow)
        created = service.create_range(
            uow,
            org_path=SZ,
            kind="mobile",
            prefix="1380010",
            start="0000",
            end="9999",
            name="深圳 1380010",
        )
        uow.commit()
    assert (created.first, created.last, created.size) == ("13800100000", "13800109999", 10_000)
    assert sum(created.grades.values()) == 10_000
    assert created.grades["tail_8888"] == 1 and created.grades["aaaa"] == 9
    assert created.grades["abcd"] == 7
    assert count_rows(engine, PoolNumber) == 10_000
    records = audit_actions(engine, "numbers.range_created")
    assert len(records) == 1  # one record for the range, not one per number
    detail = json.loads(records[0][2])
    assert detail["size"] == 10_000 and detail["first"] == "13800100000"
    with make_uow() as uow:
        listed = service.list_ranges(uow)
    assert [r.id for r in listed] == [created.id]
    assert listed[0].name == "深圳 1380010"


def test_create_fixed_line_range(make_uow, engine, frozen_clock):
    with make_uow() as uow:
        created = service.create_range(
            uow, org_path=BJ, kind="fixed", prefix="0106234", start="0000", end="0199"
        )
        uow.commit()
    assert (created.first, created.last) == ("01062340000", "01062340199")
    with make_uow() as uow:
        number = service.get(uow, "010-6234 0100")
    assert number.kind == "fixed" and number.value == "01062340100"
    assert number.grade_code == "ordinary"  # no grades installed: everything is ordinary


BAD_RANGES = [
    {"prefix": "13800x0"},
    {"prefix": ""},
    {"start": "000", "end": "9999"},  # widths differ
    {"start": "0100", "end": "0099"},  # start after end
    {"start": "abcd"},
    {"prefix": "138", "start": "00000000", "end": "00200000"},  # too big
    {"prefix": "1400000"},  # not a real mobile block
    {"prefix": "138001"},  # 10-digit numbers
    {"prefix": "13800100", "start": "0000", "end": "0009"},  # 12 digits
    {"prefix": "0106234"},  # fixed-line numbers in a mobile range
    {"kind": "satellite"},
    {"org_path": "op/gd"},
    {"org_path": "/op//gd/"},
    {"name": "x" * 101},
]


def test_create_range_refuses_bad_input_and_writes_nothing(make_uow, engine):
    for bad in BAD_RANGES:
        arguments = {
            "org_path": SZ,
            "kind": "mobile",
            "prefix": "1380010",
            "start": "0000",
            "end": "0099",
            **bad,
        }
        with make_uow() as uow, pytest.raises(ValidationError):
            service.create_range(uow, **arguments)
            pytest.fail(f"accepted {bad}")
    assert count_rows(engine, PoolNumber) == 0
    assert count_rows(engine, NumberRange) == 0


def test_fixed_kind_refuses_mobile_numbers(make_uow):
    with make_uow() as uow, pytest.raises(ValidationError) as caught:
        service.create_range(
            uow, org_path=SZ, kind="fixed", prefix="1380010", start="0000", end="0009"
        )
    assert "13800100000" in caught.value.render("en")  # the operator sees which number
    assert "固定电话" in caught.value.render("zh-CN")


def test_overlapping_range_is_refused_whole(pool, engine):
    before = count_rows(engine, PoolNumber)
    with pool.make_uow() as uow, pytest.raises(Conflict) as caught:
        service.create_range(
            uow, org_path=SZ, kind="mobile", prefix="1380010", start="0090", end="0199"
        )
    assert "10" in caught.value.render("en")  # 0090-0099 already exist
    assert count_rows(engine, PoolNumber) == before


def test_range_creation_needs_admin_and_scope(pool):
    agent = staff(SZ)
    with pool.make_uow(agent) as uow, pytest.raises(PermissionDenied):
        service.create_range(
            uow, org_path=SZ, kind="mobile", prefix="1380011", start="0000", end="0009"
        )
    city_admin = staff(SZ, "numbers.admin", "numbers.read")
    with pool.make_uow(city_admin) as uow, pytest.raises(NotFound):
        service.create_range(
            uow, org_path=BJ, kind="mobile", prefix="1380011", start="0000", end="0009"
        )
    with pool.make_uow(city_admin) as uow:
        service.create_range(
            uow, org_path=SZ + "futian/", kind="mobile", prefix="1380011", start="0000", end="0009"
        )
        assert [r.org_path for r in service.list_ranges(uow)] == [SZ, SZ + "futian/"]


# -- grades ------------------------------------------------------------------------------


def test_default_grades_install_once_and_list_ends_with_ordinary(make_uow, engine):
    with make_uow() as uow:
        assert service.install_default_grades(uow) == [
            "tail_8888",
            "aaaa",
            "abcd",
            "aabb",
            "no_four",
        ]
        assert service.install_default_grades(uow) == []
        grades = service.list_grades(uow)
        uow.commit()
    assert [g.code for g in grades] == ["tail_8888", "aaaa", "abcd", "aabb", "no_four", "ordinary"]
    assert grades[-1].premium_fee == 0 and grades[-1].min_plan_fee == 0
    assert len(audit_actions(engine, "numbers.grade_created")) == 5


def test_custom_grade_classifies_new_ranges(make_uow):
    with make_uow() as uow:
        service.install_default_grades(uow)
        service.create_grade(
            uow,
            code="lucky_168",
            name_zh="尾号168",
            name_en="Ending 168",
            pattern=r"\d168",
            digits=4,
            premium_fee=66_600,
            min_plan_fee=5_800,
            priority=80,
        )
        assert service.classify(uow, "13800100168").code == "lucky_168"
        assert service.classify(uow, "13800101111").code == "aaaa"
        created = service.create_range(
            uow, org_path=SZ, kind="mobile", prefix="1380010", start="0100", end="0199"
        )
        number = service.get(uow, "13800100168")
        uow.commit()
    assert created.grades["lucky_168"] == 1
    assert (number.grade_code, number.premium_fee, number.min_plan_fee) == (
        "lucky_168",
        66_600,
        5_800,
    )


def test_grade_fee_change_applies_to_graded_numbers(pool, engine):
    with pool.make_uow() as uow:
        changed = service.update_grade_fees(uow, "aaaa", premium_fee=1, min_plan_fee=2)
        number = service.get(uow, "13800100000")
        uow.commit()
    assert (changed.premium_fee, number.premium_fee, number.min_plan_fee) == (1, 1, 2)
    detail = json.loads(audit_actions(engine, "numbers.grade_fees_changed")[0][2])
    assert detail["before"]["premium_fee"] == 300_000


BAD_GRADES = [
    {"code": "Bad Code"},
    {"code": "ordinary"},
    {"name_zh": " "},
    {"pattern": "("},
    {"digits": 9},
    {"premium_fee": -1},
    {"min_plan_fee": 1.5},
    {"priority": "high"},
]


def test_create_grade_refuses_bad_input(make_uow, engine):
    with make_uow() as uow:
        for bad in BAD_GRADES:
            arguments = {
                "code": "x",
                "name_zh": "某",
                "name_en": "X",
                "pattern": r"\d{4}",
                "digits": 4,
                "premium_fee": 0,
                "min_plan_fee": 0,
                **bad,
            }
            with pytest.raises(ValidationError):
                service.create_grade(uow, **arguments)
                pytest.fail(f"accepted {bad}")
        assert [g.code for g in service.list_grades(uow)] == ["ordinary"]


def test_grade_errors(pool):
    with pool.make_uow() as uow:
        with pytest.raises(Conflict):
            service.create_grade(
                uow,
                code="aaaa",
                name_zh="重复",
                name_en="Dup",
                pattern=r"\d{4}",
                digits=4,
                premium_fee=0,
                min_plan_fee=0,
            )
        with pytest.raises(ValidationError):
            service.update_grade_fees(uow, "nope", premium_fee=0, min_plan_fee=0)
        with pytest.raises(ValidationError):
            service.update_grade_fees(uow, "aaaa", premium_fee=-5, min_plan_fee=0)
    with pool.make_uow(staff(SZ)) as uow, pytest.raises(PermissionDenied):
        service.install_default_grades(uow)
