"""Pure rules: number parsing and masking, grade classification, search masks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from teleserve.core.errors import ValidationError
from teleserve.numbers import rules
from teleserve.numbers.models import NumberKind
from teleserve.numbers.rules import DEFAULT_GRADES, ORDINARY, best_grade, parse_number, rank


@pytest.mark.parametrize(
    ("raw", "value", "kind"),
    [
        ("13800138000", "13800138000", NumberKind.mobile),
        (" 138-0013-8000 ", "13800138000", NumberKind.mobile),
        ("+86 138 0013 8000", "13800138000", NumberKind.mobile),
        ("8613800138000", "13800138000", NumberKind.mobile),
        ("19912345678", "19912345678", NumberKind.mobile),
        ("010-62345678", "01062345678", NumberKind.fixed),
        ("075512345678", "075512345678", NumberKind.fixed),
        ("+86 21 6123 4567", "02161234567", NumberKind.fixed),
    ],
)
def test_parse_number_accepts_mainland_mobile_and_fixed(raw, value, kind):
    parsed = parse_number(raw)
    assert (parsed.value, parsed.kind) == (value, kind)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "1380013800A",  # letters are not dialled here (no vanity numbers)
        "138 0013 800",  # 10 digits
        "138001380001",  # 12 digits
        "14000000000",  # no such mobile block
        "12345678901",
        "10086",  # short service code
        "+85291234567",  # Hong Kong
        "+12025550123",
        "0108123456",  # Beijing local numbers have 8 digits
        "13800138000; DROP TABLE",
    ],
)
def test_parse_number_refuses_malformed_and_foreign(raw):
    with pytest.raises(ValidationError) as caught:
        parse_number(raw)
    # The message never echoes a whole (possibly personal) number.
    assert "13800138000" not in str(caught.value)


# Independent restatements of the default grades, to check classification against.
def _reference(value: str) -> str:
    tail, last8 = value[-4:], value[-8:]
    ascending = all(int(tail[i + 1]) == int(tail[i]) + 1 for i in range(3))
    if tail == "8888":
        return "tail_8888"
    if len(set(tail)) == 1:
        return "aaaa"
    if ascending:
        return "abcd"
    if tail[0] == tail[1] and tail[2] == tail[3] and tail[0] != tail[2]:
        return "aabb"
    if "4" not in last8:
        return "no_four"
    return "ordinary"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("13800108888", "tail_8888"),  # also AAAA: the higher priority wins
        ("13800101111", "aaaa"),
        ("13800101234", "abcd"),
        ("13800106789", "abcd"),
        ("13800107890", "no_four"),  # 7890 is not ascending
        ("13800101122", "aabb"),
        ("13800105566", "aabb"),
        ("13800101235", "no_four"),
        ("13800101245", "ordinary"),
        ("13400101235", "no_four"),  # the 4 of the 134 block is not in the last 8
    ],
)
def test_classify_examples(value, code):
    assert best_grade(value, rank(DEFAULT_GRADES)).code == code


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_classify_matches_reference(value):
    assert best_grade(value, rank(DEFAULT_GRADES)).code == _reference(value)


def test_ordinary_has_no_fee():
    assert best_grade("13800101245", rank(DEFAULT_GRADES)) is ORDINARY
    assert (ORDINARY.premium_fee, ORDINARY.min_plan_fee) == (0, 0)


def test_rank_breaks_priority_ties_by_fee():
    cheap = rules.rule("cheap", "便宜", "Cheap", r"\d{4}", 4, 100, 0, 5)
    dear = rules.rule("dear", "贵", "Dear", r"\d{4}", 4, 900, 0, 5)
    assert best_grade("13800101245", rank([cheap, dear])).code == "dear"


@pytest.mark.parametrize(
    ("pattern", "digits"), [("(", 4), ("", 4), (r"\d", 3), (r"\d", 9), ("x" * 201, 4)]
)
def test_compile_pattern_refuses_bad_patterns(pattern, digits):
    with pytest.raises(ValidationError):
        rules.compile_pattern(pattern, digits)


def test_like_from_mask():
    assert rules.like_from_mask("138*8888") == "138%8888"
    assert rules.like_from_mask("1380010??88") == "1380010__88"
    for bad in ("138%", "13_8", "abc", ""):
        with pytest.raises(ValidationError):
            rules.like_from_mask(bad)


def _slow_verdict(value: str, kind: NumberKind) -> bool:
    try:
        parsed = parse_number(value)
    except ValidationError:
        return False
    return parsed.value == value and parsed.kind is kind


NUMBER_LIKE = st.one_of(
    st.from_regex(r"[01][0-9]{9,11}", fullmatch=True),
    st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),  # mostly real mobile blocks
    st.from_regex(r"0(10|2[0-9]|[3-9][0-9]{2})[2-8][0-9]{6,7}", fullmatch=True),  # area codes
)


@pytest.mark.parametrize("kind", list(NumberKind))
@hypothesis_settings(max_examples=300)
@given(value=NUMBER_LIKE)
def test_range_check_agrees_with_parse_number(kind, value):
    assert rules.is_range_number(value, kind) is _slow_verdict(value, kind)


@pytest.mark.parametrize(
    ("value", "kind", "ok"),
    [
        ("13800100000", NumberKind.mobile, True),
        ("14000000000", NumberKind.mobile, False),
        ("01062340000", NumberKind.fixed, True),
        ("01062340000", NumberKind.mobile, False),
        ("13800100000", NumberKind.fixed, False),
        ("00106234000", NumberKind.fixed, False),
        ("075512345678", NumberKind.fixed, True),
    ],
)
def test_range_check_examples(value, kind, ok):
    assert rules.is_range_number(value, kind) is ok
