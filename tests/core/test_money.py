from decimal import Decimal

import pytest

from teleserve.core.errors import ValidationError
from teleserve.core.money import format_money, require_positive, round_half_up, to_major, to_minor


@pytest.mark.parametrize(
    ("value", "minor"),
    [("12.34", 1234), ("0.01", 1), ("100", 10000), (Decimal("5.5"), 550), (7, 700), ("-3.2", -320)],
)
def test_to_minor(value, minor):
    assert to_minor(value) == minor


@pytest.mark.parametrize("value", ["1.234", "0.001", "abc", "NaN", "Infinity", ""])
def test_to_minor_refuses(value):
    with pytest.raises(ValidationError):
        to_minor(value)


def test_round_trip_and_format():
    assert to_major(1234) == Decimal("12.34")
    assert format_money(123456) == "¥1,234.56"
    assert format_money(-5) == "-¥0.05"


def test_half_up_rounding_once():
    assert round_half_up(Decimal("2.5")) == 3
    assert round_half_up(Decimal("2.4999")) == 2
    assert round_half_up(Decimal("-2.5")) == -3


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_require_positive_refuses(value):
    with pytest.raises(ValidationError):
        require_positive(value)


def test_error_message_in_both_languages():
    with pytest.raises(ValidationError) as info:
        to_minor("1.234")
    assert "1.234" in info.value.render("en")
    zh = info.value.render("zh-CN")
    assert "1.234" in zh and zh != info.value.render("en")
