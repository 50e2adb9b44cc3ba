from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleserve.core.errors import ValidationError
from teleserve.customers.validation import (
    Gender,
    IdType,
    credit_code_check_character,
    id_check_character,
    normalize_credit_code,
    normalize_email,
    normalize_id_number,
    normalize_mobile,
    normalize_name,
    normalize_org_path,
    normalize_service_number,
    parse_resident_id,
)

from .conftest import make_id


def _code(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.code


def test_a_published_resident_id_checks():
    # The GB 11643 worked example: 11010519491231002X.
    parsed = parse_resident_id("11010519491231002X")
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.gender is Gender.female
    assert parse_resident_id("11010519491231002x").number == "11010519491231002X"
    assert parse_resident_id("１１０１０５１９４９１２３１００２Ｘ").number == "11010519491231002X"


def test_separators_and_case_are_stripped_before_checking():
    # Typed forms (lower-case check character, spaces, dashes) and the canonical form,
    # which takes a shorter path, give the same number.
    for raw in (
        "11010519491231002X",
        "11010519491231002x",
        " 110105 19491231 002X ",
        "110105-19491231-002x",
    ):
        assert parse_resident_id(raw).number == "11010519491231002X"
    with pytest.raises(ValidationError) as caught:
        parse_resident_id("11010519491231002\u00d7")  # a multiplication sign, not an X
    assert _code(caught) == "id_number_format"


def test_the_birth_date_is_checked_against_the_given_day():
    number = make_id(born="20200101")
    assert parse_resident_id(number, today=date(2020, 1, 1)).birth_date == date(2020, 1, 1)
    with pytest.raises(ValidationError) as caught:
        parse_resident_id(number, today=date(2019, 12, 31))
    assert _code(caught) == "id_number_birth"


def test_the_check_character_needs_17_ascii_digits():
    assert id_check_character("11010519491231002") == "X"
    for bad in (
        "1101051949123100",
        "110105194912310021",
        "1101051949123100A",
        "１１０１０５１９４９１２３１００２",
    ):
        with pytest.raises(ValueError):
            id_check_character(bad)


def test_gender_comes_from_the_17th_digit():
    assert parse_resident_id(make_id(seq="123")).gender is Gender.male
    assert parse_resident_id(make_id(seq="124")).gender is Gender.female


@given(st.text(alphabet="0123456789", min_size=11, max_size=11), st.sampled_from("0123456789X"))
def test_only_the_right_check_character_passes(tail, check):
    first17 = "440106" + tail
    number = first17 + check
    if check == id_check_character(first17):
        # May still fail on the birth date; never on the check digit.
        try:
            parse_resident_id(number)
        except ValidationError as exc:
            assert exc.code == "id_number_birth"
    else:
        with pytest.raises(ValidationError) as caught:
            parse_resident_id(number)
        assert caught.value.code == "id_number_check"


def test_bad_resident_ids_are_refused_with_a_reason():
    cases = {
        "440106900307123": "id_number_legacy",  # first-generation, 15 digits
        "4401061990030712": "id_number_format",
        "44010619900307123A": "id_number_format",
        make_id(region="990106"): "id_number_region",
        make_id(born="19900230"): "id_number_birth",  # 30 February
        make_id(born="18800101"): "id_number_birth",
        make_id(born="20991231"): "id_number_birth",  # in the future
    }
    for number, code in cases.items():
        with pytest.raises(ValidationError) as caught:
            parse_resident_id(number)
        assert _code(caught) == code, number
    good = make_id()
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    with pytest.raises(ValidationError) as caught:
        parse_resident_id(wrong_check)
    assert _code(caught) == "id_number_check"


def test_other_documents():
    assert normalize_id_number("passport", "e1234 5678") == "E12345678"
    assert normalize_id_number(IdType.hk_macau_permit, "H12345678") == "H12345678"
    assert normalize_id_number(IdType.taiwan_permit, "12345678") == "12345678"
    assert normalize_id_number(IdType.foreign_permanent_resident, "USA123456789012") == (
        "USA123456789012"
    )
    permit = "810000" + "19900307" + "123"
    permit += id_check_character(permit)
    assert normalize_id_number(IdType.hmt_residence_permit, permit) == permit
    with pytest.raises(ValidationError):
        normalize_id_number(IdType.hmt_residence_permit, make_id())
    with pytest.raises(ValidationError):
        normalize_id_number(IdType.hk_macau_permit, "X12345678")
    with pytest.raises(ValidationError):
        normalize_id_number("driving_licence", "123456")
    with pytest.raises(ValidationError):
        normalize_id_number(IdType.passport, "  ")


def test_credit_codes():
    # A published example of GB 32100-2015.
    assert normalize_credit_code("91350100M000100Y43") == "91350100M000100Y43"
    assert normalize_credit_code(" 91350100m000100y43 ") == "91350100M000100Y43"
    for bad, code in {
        "91350100M000100Y44": "credit_code_check",
        "91350100M000100Y4": "credit_code_format",
        "91350100M000100I43": "credit_code_format",  # I is not in the alphabet
        "00350100M000100Y43": "credit_code_format",
    }.items():
        with pytest.raises(ValidationError) as caught:
            normalize_credit_code(bad)
        assert _code(caught) == code, bad


@given(st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=9, max_size=9))
def test_any_credit_code_with_its_check_character_passes(org):
    first17 = "91440106" + org
    assert normalize_credit_code(first17 + credit_code_check_character(first17))


def test_mobile_numbers():
    assert normalize_mobile("13800138000") == "13800138000"
    assert normalize_mobile("+86 138 0013 8000") == "13800138000"
    assert normalize_mobile("0086-19912345678") == "19912345678"
    for bad in ("12345678901", "1380013800", "02088889999", "+85291234567", "abc", ""):
        with pytest.raises(ValidationError) as caught:
            normalize_mobile(bad)
        assert _code(caught) == "mobile_invalid"
    # The message shows the number masked.
    with pytest.raises(ValidationError) as caught:
        normalize_mobile("12345678901")
    assert "123****8901" in str(caught.value)


def test_other_fields():
    assert normalize_email("Zhang.San@Example.COM") == "Zhang.San@example.com"
    with pytest.raises(ValidationError):
        normalize_email("zhang@")
    assert normalize_service_number(" 02088889999 ") == "02088889999"
    for bad in ("12", "a" * 33, "138 0013", "号码123"):
        with pytest.raises(ValidationError):
            normalize_service_number(bad)
    assert normalize_name(" 张  三 ") == "张 三"
    for bad in ("张\x00三", "张\x1b三", "张三\x01"):
        with pytest.raises(ValidationError) as caught:
            normalize_name(bad)
        assert _code(caught) == "name_invalid"
    assert normalize_name("Zoë\x7f") == "Zoë\x7f"  # DEL is not a C0 control character
    assert normalize_org_path("/TS/GD/") == "/TS/GD/"
    for bad in ("/", "TS/GD/", "/TS/GD", "/TS//GD/"):
        with pytest.raises(ValidationError):
            normalize_org_path(bad)
