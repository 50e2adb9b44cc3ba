"""TMF630 conventions: list parameters, projection, Money, and list queries in SQL."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from starlette.requests import Request

from teleserve.core.errors import ValidationError
from teleserve.core.query import (
    Condition,
    FilterField,
    ListQuery,
    Op,
    fetch_page,
    parse_datetime,
    where_clauses,
)
from teleserve.iam.models import OrgUnit
from teleserve.web.tmf.listing import BadRequest, parse_list_request, project
from teleserve.web.tmf.resources import money_in, money_out

FILTERS = {"status": "status", "validFor.startDateTime": "valid_from", "name": "name"}


def _request(params: list[tuple[str, str]]) -> Request:
    return Request({"type": "http", "query_string": urlencode(params).encode(), "headers": []})


def test_filters_operators_and_paging_are_parsed():
    parsed = parse_list_request(
        _request(
            [
                ("status", "active,pending"),
                ("validFor.startDateTime.gte", "2026-01-01T00:00:00Z"),
                ("name.ne", "x"),
                ("fields", "name, status"),
                ("offset", "20"),
                ("limit", "5"),
            ]
        ),
        FILTERS,
    )
    assert parsed.query == ListQuery(
        (
            Condition("status", Op.eq, ("active", "pending")),
            Condition("valid_from", Op.gte, ("2026-01-01T00:00:00Z",)),
            Condition("name", Op.ne, ("x",)),
        ),
        offset=20,
        limit=5,
    )
    assert parsed.fields == frozenset({"name", "status"})


@pytest.mark.parametrize(
    "params",
    [
        [("colour", "red")],
        [("offset", "x")],
        [("offset", "-1")],
        [("limit", "100000")],
        [("status.like", "a")],
    ],
)
def test_bad_list_parameters_are_400(params):
    with pytest.raises(BadRequest) as refused:
        parse_list_request(_request(params), FILTERS)
    assert refused.value.status == 400


def test_projection_keeps_identity():
    resource = {"id": "1", "href": "h", "@type": "Customer", "name": "n", "status": "s"}
    assert project(resource, frozenset({"name"})) == {
        "id": "1",
        "href": "h",
        "@type": "Customer",
        "name": "n",
    }
    assert project(resource, frozenset({"status.x"}))["status"] == "s"
    assert project(resource, None) == resource


@pytest.mark.parametrize(
    ("value", "fen"), [(12.34, 1234), ("0.1", 10), (5, 500), (0, 0), ("1e2", 10000)]
)
def test_money_in(value, fen):
    assert money_in({"unit": "CNY", "value": value}, "CNY") == fen


@pytest.mark.parametrize(
    "money",
    [
        {"unit": "CNY", "value": 1.234},
        {"unit": "USD", "value": 1},
        {"unit": "CNY", "value": True},
        {"unit": "CNY", "value": "NaN"},
        {"unit": "CNY", "value": "abc"},
        {"unit": "CNY"},
        12,
    ],
)
def test_money_in_refuses(money):
    with pytest.raises(ValidationError):
        money_in(money, "CNY")


def test_money_out():
    assert money_out(1234, "CNY") == {"unit": "CNY", "value": 12.34}
    assert money_out(-5, "CNY") == {"unit": "CNY", "value": -0.05}


def test_where_clauses_filter_in_the_database(tmf, make_uow):
    fields = {
        "code": FilterField(OrgUnit.code),
        "level": FilterField(OrgUnit.level),
        "created": FilterField(OrgUnit.created_at, parse_datetime, ordered=True),
    }
    base = select(OrgUnit)
    with make_uow(readonly=True) as uow:
        cities = ListQuery((Condition("level", Op.eq, ("city", "hall")),), limit=2)
        rows, total = fetch_page(
            uow.session,
            base.where(*where_clauses(cities.conditions, fields)),
            cities,
            order_by=[OrgUnit.code],
        )
        assert total == 3
        assert [r.code for r in rows] == ["GZ", "GZTH"]
        not_cities = (Condition("level", Op.ne, ("city", "hall")),)
        rows, total = fetch_page(
            uow.session,
            base.where(*where_clauses(not_cities, fields)),
            ListQuery(not_cities),
            order_by=[OrgUnit.code],
        )
        assert sorted(r.code for r in rows) == ["GD", "TS"]
        with pytest.raises(ValidationError):
            where_clauses((Condition("code", Op.gt, ("A",)),), fields)
        with pytest.raises(ValidationError):
            where_clauses((Condition("created", Op.gt, ("yesterday",)),), fields)
        with pytest.raises(ValidationError):
            where_clauses((Condition("nope", Op.eq, ("1",)),), fields)


def test_tmf_paths_answer_errors_in_the_tmf_shape(tmf):
    answer = tmf.client.get("/tmf-api/nothingHere/v4/thing", headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 404
    body = answer.json()
    assert body["@type"] == "Error"
    assert body["status"] == "404"
    assert body["reason"] == "No such resource"
    assert body["message"] == "没有这个资源"
