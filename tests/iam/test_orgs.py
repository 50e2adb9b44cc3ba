from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teleserve.core.audit import AuditRecord
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.iam import service as iam
from teleserve.iam.models import OrgUnit
from teleserve.iam.schemas import OrgLevel, OrgUnitSpec

from .conftest import staff


def _count_units(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(OrgUnit))


def test_batch_builds_materialised_paths(tree):
    assert tree["TS"].path == "/TS/"
    assert tree["GD"].path == "/TS/GD/"
    assert tree["GZ"].path == "/TS/GD/GZ/"
    assert tree["GZTH"].path == "/TS/GD/GZ/GZTH/"
    assert tree["GZTH-K1"].path == "/TS/GD/GZ/GZTH/GZTH-K1/"
    assert tree["GZ-K2"].path == "/TS/GD/GZ/GZ-K2/"
    assert tree["GZ"].parent_id == tree["GD"].id
    assert tree["TS"].parent_id is None
    assert tree["GZTH"].level is OrgLevel.hall


def test_batch_accepts_children_before_parents_and_keeps_input_order(make_uow):
    specs = [
        OrgUnitSpec(code="C1", name_zh="市", name_en="City", level="city", parent_code="P1"),
        OrgUnitSpec(code="P1", name_zh="省", name_en="Province", level="province", parent_code="R"),
        OrgUnitSpec(code="R", name_zh="总部", name_en="Root", level="operator"),
    ]
    with make_uow() as uow:
        units = iam.create_org_units_batch(uow, specs)
        uow.commit()
    assert [u.code for u in units] == ["C1", "P1", "R"]
    assert units[0].path == "/R/P1/C1/"


def test_create_org_unit_one_by_one(make_uow):
    with make_uow() as uow:
        root = iam.create_org_unit(uow, "OP", "运营商", "Operator", "operator")
        province = iam.create_org_unit(uow, "ZJ", "浙江", "Zhejiang", "province", root.id)
        city = iam.create_org_unit(uow, "HZ", "杭州", "Hangzhou", OrgLevel.city, province.id)
        site = iam.create_org_unit(uow, "HZ-K1", "西湖自助点", "West Lake kiosk", "site", city.id)
        uow.commit()
    assert site.path == "/OP/ZJ/HZ/HZ-K1/"
    with make_uow() as uow:
        assert iam.org_path_of(uow, city.id) == "/OP/ZJ/HZ/"
        assert iam.get_org_unit_by_code(uow, "HZ-K1").id == site.id


@pytest.mark.parametrize(
    ("level", "parent_code"),
    [
        ("city", "TS"),  # a city belongs under a province
        ("province", "GD"),  # no province under a province
        ("hall", "GD"),
        ("hall", "GZTH"),
        ("site", "GD"),  # a site is under a city or a hall
        ("province", "GZTH-K1"),  # nothing under a site
        ("site", "GZTH-K1"),
    ],
)
def test_level_rules(make_uow, tree, engine, level, parent_code):
    before = _count_units(engine)
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_unit(uow, "NEW", "新", "New", level, tree[parent_code].id)
    assert _count_units(engine) == before


def test_level_rules_inside_a_batch(make_uow, tree, engine):
    specs = [
        OrgUnitSpec(code="X-CITY", name_zh="市", name_en="City", level="city", parent_code="GD"),
        OrgUnitSpec(
            code="X-PROV", name_zh="省", name_en="Prov", level="province", parent_code="X-CITY"
        ),
    ]
    before = _count_units(engine)
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_units_batch(uow, specs)
    assert _count_units(engine) == before


def test_non_root_needs_parent_and_root_refuses_one(make_uow, tree):
    with make_uow() as uow:
        with pytest.raises(ValidationError):
            iam.create_org_unit(uow, "NOPARENT", "无", "None", "city")
        with pytest.raises(ValidationError):
            iam.create_org_unit(uow, "ROOT2", "根", "Root", "operator", tree["TS"].id)


def test_only_one_root(make_uow, tree):
    with make_uow() as uow, pytest.raises(Conflict):
        iam.create_org_unit(uow, "OTHER", "另一个", "Other", "operator")


@pytest.mark.parametrize("code", ["", "a/b", "has space", "x" * 33, "-lead", "中文"])
def test_bad_codes_refused(make_uow, tree, code):
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_unit(uow, code, "名", "Name", "city", tree["GD"].id)


def test_names_required(make_uow, tree):
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_unit(uow, "FS", "  ", "Foshan", "city", tree["GD"].id)


def test_unknown_level(make_uow, tree):
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_unit(uow, "FS", "佛山", "Foshan", "district", tree["GD"].id)


def test_duplicate_code_refused_and_nothing_written(make_uow, tree, engine):
    before = _count_units(engine)
    with make_uow() as uow, pytest.raises(Conflict):
        iam.create_org_unit(uow, "SZ", "深圳", "Shenzhen", "city", tree["GD"].id)
    batch = [
        OrgUnitSpec(code="FS", name_zh="佛山", name_en="Foshan", level="city", parent_code="GD"),
        OrgUnitSpec(code="GZ", name_zh="广州", name_en="Guangzhou", level="city", parent_code="GD"),
    ]
    with make_uow() as uow, pytest.raises(Conflict):
        iam.create_org_units_batch(uow, batch)
    twice = [batch[0], batch[0]]
    with make_uow() as uow, pytest.raises(ValidationError):
        iam.create_org_units_batch(uow, twice)
    assert _count_units(engine) == before


def test_city_actor_lists_only_its_subtree(make_uow, tree):
    city = staff(tree["GZ"].path, "iam.orgs.read")
    with make_uow(city) as uow:
        codes = [u.code for u in iam.list_org_units(uow)]
        sites = [u.code for u in iam.list_org_units(uow, level="site")]
    assert codes == ["GZ", "GZ-K2", "GZTH", "GZTH-K1"]
    assert sites == ["GZ-K2", "GZTH-K1"]
    with make_uow() as uow:
        assert len(iam.list_org_units(uow)) == len(tree)


def test_out_of_subtree_units_are_not_found(make_uow, tree):
    city = staff(tree["GZ"].path, "iam.orgs.read", "iam.orgs.write")
    with make_uow(city) as uow:
        assert iam.get_org_unit(uow, tree["GZTH"].id).code == "GZTH"
        for code in ("SZ", "GD", "TS", "BJ"):
            with pytest.raises(NotFound):
                iam.get_org_unit(uow, tree[code].id)
            with pytest.raises(NotFound):
                iam.get_org_unit_by_code(uow, code)
            with pytest.raises(NotFound):
                iam.org_path_of(uow, tree[code].id)
        with pytest.raises(NotFound):
            iam.get_org_unit(uow, "no-such-id")
        # and it cannot build under another city either
        with pytest.raises(NotFound):
            iam.create_org_unit(uow, "SZ-H1", "营业厅", "Hall", "hall", tree["SZ"].id)
        hall = iam.create_org_unit(uow, "GZ-H2", "营业厅", "Hall", "hall", tree["GZ"].id)
    assert hall.path == "/TS/GD/GZ/GZ-H2/"


def test_org_writes_need_permission_and_root_needs_operator_actor(make_uow, tree):
    reader = staff(tree["GZ"].path, "iam.orgs.read")
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        iam.create_org_unit(uow, "GZ-H3", "营业厅", "Hall", "hall", tree["GZ"].id)
    nobody = staff(tree["GZ"].path)
    with make_uow(nobody) as uow, pytest.raises(PermissionDenied):
        iam.list_org_units(uow)
    province_admin = staff(tree["GD"].path, "iam.orgs.write")
    spec = OrgUnitSpec(code="NEWROOT", name_zh="根", name_en="Root", level="operator")
    with make_uow(province_admin) as uow, pytest.raises(PermissionDenied):
        iam.create_org_units_batch(uow, [spec])


def test_org_creation_is_audited(make_uow, tree, engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditRecord.action, AuditRecord.subject_id).where(
                AuditRecord.action == "iam.org.created"
            )
        ).all()
    assert {subject for _, subject in rows} == {unit.id for unit in tree.values()}


def test_code_errors_name_the_org_code_in_both_languages(make_uow, tree):
    spec = OrgUnitSpec(code="GZ", name_zh="广州", name_en="Guangzhou", level="city")
    with make_uow() as uow, pytest.raises(Conflict) as taken:
        iam.create_org_units_batch(uow, [spec.model_copy(update={"parent_code": "GD"})])
    assert taken.value.code == "conflict"
    assert taken.value.render("en") == "The org code GZ is already used"
    assert taken.value.render("zh-CN") == "组织编码 GZ 已被使用"
    with make_uow() as uow, pytest.raises(ValidationError) as bad:
        iam.create_org_unit(uow, "bad code!", "市", "City", "city", tree["GD"].id)
    assert bad.value.code == "invalid_org_code"
    assert "bad code!" in bad.value.render("en")
