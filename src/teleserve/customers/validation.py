"""Validation and normalisation of customer data: pure functions, no database.

- Resident ID numbers (居民身份证号码, GB 11643-1999): 18 characters, a 6-digit region
  code, the birth date, a sequence number whose last digit gives the sex, and an ISO 7064
  MOD 11-2 check character. First-generation 15-digit numbers are refused, not converted:
  those cards stopped being valid on 2013-01-01, so a 15-digit number today is a typo or
  an expired card, and a converted number would carry a check digit nobody ever checked.
- Unified social credit codes (统一社会信用代码, GB 32100-2015): 18 characters from a
  31-character alphabet with a MOD 31 check character.
- Mobile numbers: mainland China mobiles only, checked against libphonenumber's real
  prefixes (so ``12345678901`` is refused), stored as the 11-digit national number.

Every refusal is a ``ValidationError`` with a translatable message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from operator import mul

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from teleserve.core.clock import business_date
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.masking import mask_id_number, mask_phone


class IdType(StrEnum):
    """Identity documents accepted for individuals."""

    resident_id = "resident_id"  # 居民身份证
    hmt_residence_permit = "hmt_residence_permit"  # 港澳台居民居住证 (GB 11643 format)
    passport = "passport"  # 护照
    hk_macau_permit = "hk_macau_permit"  # 港澳居民来往内地通行证
    taiwan_permit = "taiwan_permit"  # 台湾居民来往大陆通行证
    foreign_permanent_resident = "foreign_permanent_resident"  # 外国人永久居留身份证


class Gender(StrEnum):
    male = "male"
    female = "female"


# First two digits of a mainland resident ID: the province-level division (GB/T 2260).
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
        "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
        "63", "64", "65",
    }
)  # fmt: skip
# Residence permits for Hong Kong, Macau and Taiwan residents use these region codes.
HMT_PERMIT_PREFIXES = ("810000", "820000", "830000")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# ``id_check_character`` weighs the digits' ASCII codes (a bulk seed checks thousands of
# numbers, and ``int`` per digit was most of the cost): this takes their "0"s back off.
_ID_ASCII_ZERO = ord("0") * sum(_ID_WEIGHTS)
_ID18 = re.compile(r"[0-9]{17}[0-9X]")
_ID15 = re.compile(r"[0-9]{15}")

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# Registration authority (1st char) and organisation type (2nd char) codes in use.
_USCC_SHAPE = re.compile(r"[1-9A-HNY][1-9][0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}")

_PASSPORT = re.compile(r"[A-Z0-9]{5,20}")
_HK_MACAU_PERMIT = re.compile(r"[HM][0-9]{8}([0-9]{2})?")
_TAIWAN_PERMIT = re.compile(r"[0-9]{8}([0-9]{2})?")
_FOREIGN_PR_2017 = re.compile(r"[A-Z]{3}[0-9]{12}")

_SERVICE_NUMBER = re.compile(r"[0-9A-Za-z._@-]{3,32}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_ORG_PATH = re.compile(r"/([^/]+/)*")
_CONTROL = re.compile(r"[\x00-\x1f]")  # the C0 control characters, ord < 32


@dataclass(frozen=True)
class ResidentId:
    number: str
    birth_date: date
    gender: Gender


def _strip(value: str) -> str:
    # NFKC turns full-width characters (IME input) into ASCII; spaces and dashes go.
    if value.isascii() and value.isalnum():
        # Nothing for either to do (NFKC leaves ASCII as it is): the common, typed-right
        # case, which bulk registrations meet for every row.
        return value.upper()
    return re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", value)).upper()


def canonical_document_number(raw: str) -> str:
    """The form a document number's blind index is computed over, whatever its type:
    a resident ID as ``parse_resident_id`` gives it, anything else stripped (search)."""
    try:
        return parse_resident_id(raw).number
    except ValidationError:
        return _strip(raw)


def id_check_character(first17: str) -> str:
    """The GB 11643 (ISO 7064 MOD 11-2) check character of 17 digits."""
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("a check character is computed over 17 ASCII digits")
    total = sum(map(mul, first17.encode(), _ID_WEIGHTS)) - _ID_ASCII_ZERO
    return _ID_CHECK[total % 11]


def parse_resident_id(raw: str, *, permit: bool = False, today: date | None = None) -> ResidentId:
    """Validate an 18-character resident ID number (or an HMT residence permit number).

    ``today`` is the business date a birth date may not be after (default: now's); a
    batch reads the clock once for all its numbers."""
    number = _strip(raw)
    if _ID15.fullmatch(number):
        raise ValidationError(
            _("First-generation 15-digit ID numbers are no longer valid; give the 18-digit number"),
            code="id_number_legacy",
        )
    if not _ID18.fullmatch(number):
        raise ValidationError(
            _("An ID number has 18 characters: 17 digits and a check digit (0-9 or X)"),
            code="id_number_format",
        )
    if id_check_character(number[:17]) != number[17]:
        raise ValidationError(
            _("The ID number's check digit is wrong; please check the number"),
            code="id_number_check",
        )
    if permit:
        if not number.startswith(HMT_PERMIT_PREFIXES):
            raise ValidationError(
                _("A residence permit number starts with 810000, 820000 or 830000"),
                code="id_number_region",
            )
    elif number[:2] not in PROVINCE_CODES:
        raise ValidationError(_("The ID number's region code is unknown"), code="id_number_region")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValidationError(
            _("The ID number's birth date is not a date"), code="id_number_birth"
        ) from None
    if born.year < 1900 or born > (today or business_date()):
        raise ValidationError(_("The ID number's birth date is not a date"), code="id_number_birth")
    gender = Gender.male if int(number[16]) % 2 else Gender.female
    return ResidentId(number, born, gender)


def normalize_id_number(id_type: IdType | str, raw: str) -> str:
    """The canonical form of a document number (upper case, no spaces), validated."""
    try:
        kind = IdType(id_type)
    except ValueError:
        raise ValidationError(
            _("Unknown identity document type {id_type}"), id_type=str(id_type)
        ) from None
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError(_("The identity document number is missing"))
    if kind is IdType.resident_id:
        return parse_resident_id(raw).number
    if kind is IdType.hmt_residence_permit:
        return parse_resident_id(raw, permit=True).number
    number = _strip(raw)
    if kind is IdType.foreign_permanent_resident:
        # 2017 card: 3 letters + 12 digits; 2023 card: 18 characters starting with 9, with
        # the resident-ID check character.
        if _FOREIGN_PR_2017.fullmatch(number):
            return number
        if (
            _ID18.fullmatch(number)
            and number.startswith("9")
            and id_check_character(number[:17]) == number[17]
        ):
            return number
    elif kind is IdType.hk_macau_permit:
        if _HK_MACAU_PERMIT.fullmatch(number):
            return number
    elif kind is IdType.taiwan_permit:
        if _TAIWAN_PERMIT.fullmatch(number):
            return number
    elif _PASSPORT.fullmatch(number):
        return number
    raise ValidationError(
        _("{number} is not a valid number for this identity document"),
        code="id_number_format",
        number=mask_id_number(number),
    )


def credit_code_check_character(first17: str) -> str:
    """The GB 32100-2015 check character of the first 17 characters of a credit code."""
    total = sum(
        _USCC_ALPHABET.index(char) * weight
        for char, weight in zip(first17, _USCC_WEIGHTS, strict=True)
    )
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def normalize_credit_code(raw: str) -> str:
    """A validated unified social credit code, upper case."""
    code = _strip(raw or "")
    if len(code) != 18 or any(char not in _USCC_ALPHABET for char in code):
        raise ValidationError(
            _(
                "A unified social credit code has 18 characters "
                "(digits and capital letters except I, O, S, V and Z)"
            ),
            code="credit_code_format",
        )
    if not _USCC_SHAPE.fullmatch(code):
        raise ValidationError(
            _("{value} is not a unified social credit code"),
            code="credit_code_format",
            value=code,
        )
    if credit_code_check_character(code[:17]) != code[17]:
        raise ValidationError(
            _("The unified social credit code's check character is wrong"),
            code="credit_code_check",
        )
    return code


@lru_cache(maxsize=1)
def _cn_mobile_pattern() -> re.Pattern[str]:
    # libphonenumber's own pattern of mainland mobile numbers (its real prefixes).
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    assert metadata is not None and metadata.mobile is not None
    return re.compile(str(metadata.mobile.national_number_pattern))


def normalize_mobile(raw: str) -> str:
    """A mainland China mobile number as its 11 national digits (``13800138000``)."""
    text = (raw or "").strip()
    # Fast path for the common, already national form: the same metadata check that
    # ``number_type`` applies, without the general parser (bulk registrations).
    if len(text) == 11 and text.isascii() and _cn_mobile_pattern().fullmatch(text):
        return text
    try:
        parsed = phonenumbers.parse(text, "CN")
    except NumberParseException:
        parsed = None
    if (
        parsed is None
        or parsed.country_code != 86
        or not phonenumbers.is_valid_number(parsed)
        or phonenumbers.number_type(parsed)
        not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    ):
        raise ValidationError(
            _("{number} is not a mainland China mobile number"),
            code="mobile_invalid",
            number=mask_phone(text),
        )
    return str(parsed.national_number)


def normalize_email(raw: str) -> str:
    text = (raw or "").strip()
    if not _EMAIL.fullmatch(text):
        raise ValidationError(_("Not an email address"), code="email_invalid")
    local, _at, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_service_number(raw: str) -> str:
    """A service number (MSISDN, fixed line or broadband account) as PROTOCOL.md allows."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not _SERVICE_NUMBER.fullmatch(text):
        raise ValidationError(
            _("A service number has 3 to 32 letters, digits or . _ @ -"),
            code="service_number_format",
        )
    return text


def normalize_name(raw: str, *, max_length: int = 100) -> str:
    """A person's or organisation's name: trimmed, inner spaces collapsed, 1..100 chars."""
    text = " ".join((raw or "").split())
    if not text:
        raise ValidationError(_("The name is missing"), code="name_missing")
    if len(text) > max_length:
        raise ValidationError(
            _("The name is longer than {max} characters"), code="name_length", max=max_length
        )
    if _CONTROL.search(text):
        raise ValidationError(_("The name contains control characters"), code="name_invalid")
    return text


def normalize_address(raw: str) -> str:
    text = " ".join((raw or "").split())
    if not text or len(text) > 300:
        raise ValidationError(_("An address has 1 to 300 characters"), code="address_invalid")
    return text


def normalize_org_path(raw: str) -> str:
    """An organisation path as iam writes it: ``/<root>/<province>/.../``."""
    if not isinstance(raw, str) or len(raw) > 255 or not _ORG_PATH.fullmatch(raw) or raw == "/":
        raise ValidationError(
            _("{org_path} is not an organisation path"), code="org_path_invalid", org_path=raw
        )
    return raw
