"""The JSON body rules: one UTF-8 object, no NaN / Infinity, no duplicate keys."""

from __future__ import annotations

import pytest

from teleserve.gateway.body import BodyViolation, encode_body, parse_body


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff{}", "not_utf8"),
        (b'{"a":"\xed\xa0\x80"}', "not_utf8"),  # a surrogate encoded in UTF-8
        (b'{"a":"\xc0\xaf"}', "not_utf8"),  # overlong
        (b"\xef\xbb\xbf{}", "not_json"),  # a BOM
        (b"", "not_json"),
        (b"{", "not_json"),
        (b"{}{}", "not_json"),
        (b"{'a':1}", "not_json"),
        (b'{"a":1,}', "not_json"),
        (b'{"a":"tab\there"}', "not_json"),  # raw control character in a string
        (b"\x0c{}", "not_json"),  # form feed is not JSON whitespace
        (b'{"a":NaN}', "nan_or_infinity"),
        (b'{"a":-Infinity}', "nan_or_infinity"),
        (b'{"a":[Infinity]}', "nan_or_infinity"),
        (b'{"a":1e400}', "nan_or_infinity"),
        (b'{"a":1,"a":1}', "duplicate_key"),
        (b'{"a":{"b":1,"b":2}}', "duplicate_key"),
        (b'{"a":[{"x":1,"x":1}]}', "duplicate_key"),
        (b'{"a":"\\ud800"}', "lone_surrogate"),
        (b'{"\\udc00":1}', "lone_surrogate"),
        (b'{"a":["\\uDBFF"]}', "lone_surrogate"),
        (b"[]", "not_object"),
        (b'"{}"', "not_object"),
        (b"null", "not_object"),
        (b"1", "not_object"),
        (b'{"a":' + b"1" * 5000 + b"}", "not_json"),  # past Python's int digit limit
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
        (b"{" + b" " * (1024 * 1024) + b"}", "too_large"),
    ],
)
def test_refused_bodies(raw: bytes, reason: str) -> None:
    assert parse_body(raw) == BodyViolation(reason)


def test_accepted_bodies() -> None:
    assert parse_body(b"{}") == {}
    assert parse_body(b' \r\n\t{ "a" : 1 } \n') == {"a": 1}
    # \u escapes are free; a valid surrogate pair is one character.
    assert parse_body(b'{"n":"\\u5f20*","e":"\\ud83d\\ude00"}') == {"n": "张*", "e": "😀"}
    assert parse_body('{"n":"张*"}'.encode()) == {"n": "张*"}
    # Unknown fields are kept (and ignored later); key order is free.
    assert parse_body(b'{"b":1,"a":2}') == {"b": 1, "a": 2}
    # Floats parse (validation decides whether a field may be one).
    assert parse_body(b'{"a":1.5,"b":1e3}') == {"a": 1.5, "b": 1000.0}


def test_integers_stay_integers() -> None:
    body = parse_body(b'{"amount":10000,"big":123456789012345678901234567890}')
    assert isinstance(body, dict)
    assert type(body["amount"]) is int
    assert body["big"] == 123456789012345678901234567890


def test_encode_is_compact_utf8_in_given_order() -> None:
    assert encode_body({"b": 1, "a": "张*", "c": [1, {"d": None}]}) == (
        '{"b":1,"a":"张*","c":[1,{"d":null}]}'.encode()
    )
    with pytest.raises(ValueError):
        encode_body({"a": float("nan")})
