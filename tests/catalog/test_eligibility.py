from datetime import timedelta

import pytest

from teleserve.catalog import service
from teleserve.core.actor import SYSTEM
from teleserve.core.errors import ValidationError
from tests.catalog.helpers import ANONYMOUS_CUSTOMER, CATALOG_ADMIN, spec, standard_catalog

SZ = "/T/GD/SZ/"


@pytest.fixture
def catalog(make_uow, frozen_clock):
    with make_uow(CATALOG_ADMIN) as uow:
        service.create_offerings_batch(
            uow,
            [
                *standard_catalog(),
                spec("P_SOON", valid_from=frozen_clock.now() + timedelta(days=2)),
                spec("P_ENDED", valid_to=frozen_clock.now()),
                spec("P_RETIRED", status="retired"),
                spec("VAS_RETIRED", "vas", status="retired"),
            ],
        )
        uow.commit()


def check(uow, code, **overrides):
    context = {"customer_category": "individual", "account_type": "prepaid", "org_path": SZ}
    service.check_eligibility(uow, code, **{**context, **overrides})


def refused(uow, code, **overrides) -> str:
    with pytest.raises(ValidationError) as exc:
        check(uow, code, **overrides)
    return str(exc.value)


def test_eligible_offerings_pass(make_uow, catalog):
    # Anyone may check eligibility: the published catalog is public.
    with make_uow(ANONYMOUS_CUSTOMER) as uow:
        check(uow, "P_BASIC")
        check(uow, "p_basic")
        check(uow, "P_GD")  # sold in /T/GD/, the customer is in /T/GD/SZ/
        check(uow, "P_ORG", customer_category="organisation", account_type="postpaid")
        check(uow, "VAS_DATA", current_plan_code="P_BASIC")
        check(uow, "VAS_RING_B", current_plan_code="P_PLUS", current_vas_codes=["VAS_CLIP"])
        check(uow, "P_BASIC", current_vas_codes=["VAS_DATA", "VAS_CLIP"])
        check(uow, "BB_100", kinds={"broadband"})


def test_unknown_and_unpublished(make_uow, catalog):
    with make_uow(ANONYMOUS_CUSTOMER) as uow:
        assert refused(uow, "P_NOPE") == "Unknown offering P_NOPE"
        # A draft looks unknown to the public, and is "not published" to catalog staff.
        assert refused(uow, "P_DRAFT") == "Unknown offering P_DRAFT"
    with make_uow(CATALOG_ADMIN) as uow:
        assert "not published yet" in refused(uow, "P_DRAFT")
        assert "has been retired" in refused(uow, "P_RETIRED")
        assert "not on sale until 2026-11-27" in refused(uow, "P_SOON")
        assert "no longer on sale" in refused(uow, "P_ENDED")


def test_validity_window_follows_the_clock(make_uow, catalog, frozen_clock):
    frozen_clock.advance(days=2)
    with make_uow() as uow:
        check(uow, "P_SOON")


def test_customer_category_account_type_and_region(make_uow, catalog):
    with make_uow() as uow:
        assert "only available to organisation customers" in refused(
            uow, "P_ORG", account_type="postpaid"
        )
        assert "only available to postpaid accounts" in refused(
            uow, "P_ORG", customer_category="organisation"
        )
        assert "only available to postpaid accounts" in refused(uow, "P_POST")
        assert "not available in this region" in refused(uow, "P_GD", org_path="/T/BJ/")
        # A sibling whose path merely starts with the same letters is another region.
        assert "not available in this region" in refused(uow, "P_GD", org_path="/T/GDX/")


def test_vas_needs_its_base_plan(make_uow, catalog):
    with make_uow() as uow:
        assert "needs a base plan" in refused(uow, "VAS_CLIP")
        message = refused(uow, "VAS_DATA", current_plan_code="P_PLUS")
        assert "only available with the plans P_BASIC" in message
        assert "has been retired" in refused(uow, "VAS_RETIRED", current_plan_code="P_BASIC")


def test_mutually_exclusive_vas_both_ways(make_uow, catalog):
    with make_uow() as uow:
        # VAS_RING_A declares the exclusion; it holds from either side.
        assert "cannot be combined with VAS_RING_A" in refused(
            uow, "VAS_RING_B", current_plan_code="P_BASIC", current_vas_codes=["vas_ring_a"]
        )
        assert "cannot be combined with VAS_RING_B" in refused(
            uow, "VAS_RING_A", current_plan_code="P_BASIC", current_vas_codes=["VAS_RING_B"]
        )


def test_new_plan_must_keep_current_vas(make_uow, catalog):
    with make_uow() as uow:
        message = refused(uow, "P_PLUS", current_vas_codes=["VAS_CLIP", "VAS_DATA"])
        assert message == "Current service VAS_DATA does not work with plan P_PLUS; remove it first"


def test_kinds_restrict_what_is_acceptable(make_uow, catalog):
    with make_uow() as uow:
        assert "not a base plan for this kind of line" in refused(
            uow, "P_BASIC", kinds={"broadband"}
        )
        assert "not a value-added service" in refused(
            uow, "P_BASIC", kinds={"vas"}, current_plan_code="P_PLUS"
        )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"customer_category": "alien"}, "Unknown customer category alien"),
        ({"account_type": "barter"}, "Unknown account type barter"),
        ({"org_path": "GD"}, "Invalid organisation path GD"),
    ],
)
def test_bad_context(make_uow, catalog, overrides, fragment):
    with make_uow() as uow:
        assert fragment in refused(uow, "P_BASIC", **overrides)


def test_reasons_are_translated(make_uow, catalog):
    with make_uow(SYSTEM) as uow, pytest.raises(ValidationError) as exc:
        check(uow, "P_ORG", account_type="postpaid")
    assert exc.value.render("zh-CN") == "业务 P_ORG 仅限政企客户办理"
    assert exc.value.status == 422


def test_checker_loads_each_offering_once(make_uow, catalog, engine):
    from sqlalchemy import event

    statements: list[str] = []

    def count(*args, **kwargs):
        statements.append(args[2])

    with make_uow() as uow:
        checker = service.EligibilityChecker(uow)
        assert uow.connection is not None  # open the transaction before counting
        event.listen(engine, "before_cursor_execute", count)
        try:
            for _ in range(50):
                checker.check(
                    "VAS_DATA",
                    customer_category="individual",
                    account_type="prepaid",
                    org_path=SZ,
                    current_plan_code="P_BASIC",
                    current_vas_codes=["VAS_CLIP"],
                )
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2  # VAS_DATA and VAS_CLIP, once each
