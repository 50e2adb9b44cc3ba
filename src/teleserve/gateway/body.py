"""The JSON body rules: one UTF-8 JSON object, no NaN or Infinity, no duplicate keys.

Python's ``json`` is lenient where TSP/1 is not (it takes ``NaN``, turns ``1e400`` into
infinity, keeps the last of duplicate keys and accepts lone ``\\ud800`` escapes that cannot
be stored or re-encoded), so each of those is closed off here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from teleserve.gateway.frame import MAX_BODY


@dataclass(frozen=True, slots=True)
class BodyViolation:
    """Why a body is not a TSP/1 body (``10001``); ``reason`` is a stable token for
    ``details.reason`` and logs."""

    reason: str


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constants(name: str) -> Any:
    raise _Refused("nan_or_infinity")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf: Infinity by another name
        raise _Refused("nan_or_infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Refused("duplicate_key")
    return obj


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_no_constants, parse_float=_finite_float
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_body(raw: bytes) -> dict[str, Any] | BodyViolation:
    """The body as a dict, or why it is not one. Never raises on any input."""
    if len(raw) > MAX_BODY:
        return BodyViolation("too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return BodyViolation("not_utf8")
    try:
        value = _DECODER.decode(text)
    except _Refused as exc:
        return BodyViolation(exc.reason)
    except RecursionError:
        # Nested deeper than the parser goes; no TSP/1 body is more than a few levels.
        return BodyViolation("too_deep")
    except ValueError:
        # Not JSON (a BOM included), or an integer longer than Python's 4,300 digits.
        return BodyViolation("not_json")
    if not isinstance(value, dict):
        return BodyViolation("not_object")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        return BodyViolation("lone_surrogate")
    return value


# One encoder for every body: ``json.dumps`` with options builds a new one per call, which
# costs more than encoding a payment's answer (the money writer encodes one per payment).
_BODY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in the order given (the test vectors' spelling)."""
    return _BODY_ENCODER.encode(body).encode("utf-8")
