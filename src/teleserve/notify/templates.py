"""Message templates as data, in Simplified Chinese and English.

A template names its parameters and their kinds; ``prepare`` validates what a caller
passes (before anything is written) and ``render`` produces two texts: the one the sender
delivers, and a *redacted* one for storage and listings, where secret parameters (one-time
codes) are masked. Phone numbers are always shown masked (``138****8000``), money is
given in fen and shown in yuan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from teleserve.core import crypto
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import DEFAULT_LOCALE, SUPPORTED_LOCALES, _, normalize_locale
from teleserve.core.masking import mask_phone
from teleserve.core.money import to_major
from teleserve.core.settings import get_settings

ENCRYPTION_PURPOSE = "notify.param"
HIDDEN = "******"
_DIGITS = re.compile(r"^\d{4,10}$")
_MAX_TEXT = 200


class Kind(StrEnum):
    text = "text"  # shown as given
    integer = "integer"  # a non-negative whole number
    money = "money"  # fen (int), shown as yuan with two decimals
    phone = "phone"  # shown masked
    otp = "otp"  # a one-time code: digits, stored encrypted, hidden in the stored text


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    default: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Template:
    code: str
    params: tuple[Param, ...]
    subject: Mapping[str, str]  # by locale; the email subject
    body: Mapping[str, str]  # by locale
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})
        for texts in (self.subject, self.body):
            missing = set(SUPPORTED_LOCALES) - set(texts)
            if missing:
                raise ValueError(f"template {self.code} lacks {sorted(missing)}")

    def param(self, name: str) -> Param | None:
        return self._by_name.get(name)


def _otp_minutes() -> int:
    return max(1, round(get_settings().otp_valid_seconds / 60))


def _reservation_minutes() -> int:
    return get_settings().number_reservation_minutes


TEMPLATES: dict[str, Template] = {
    t.code: t
    for t in (
        Template(
            "otp",
            (Param("code", Kind.otp), Param("minutes", Kind.integer, _otp_minutes)),
            {"zh-CN": "验证码", "en": "Verification code"},
            {
                "zh-CN": "您的验证码是{code}，{minutes}分钟内有效。请勿泄露给他人。",
                "en": "Your verification code is {code}, valid for {minutes} minutes. "
                "Do not share it with anyone.",
            },
        ),
        Template(
            "payment_received",
            (
                Param("number", Kind.phone),
                Param("amount", Kind.money),
                Param("balance", Kind.money),
            ),
            {"zh-CN": "缴费成功", "en": "Payment received"},
            {
                "zh-CN": "缴费成功：您为号码{number}缴费{amount}元，当前余额{balance}元。"
                "感谢您的使用！",
                "en": "Payment received: CNY {amount} for {number}. "
                "Your balance is now CNY {balance}. Thank you!",
            },
        ),
        Template(
            "balance_low",
            (Param("number", Kind.phone), Param("balance", Kind.money)),
            {"zh-CN": "余额不足提醒", "en": "Low balance"},
            {
                "zh-CN": "余额不足提醒：您的号码{number}当前余额为{balance}元，"
                "为避免停机，请及时充值。",
                "en": "Low balance: the balance of {number} is CNY {balance}. "
                "Please top up to avoid suspension.",
            },
        ),
        Template(
            "number_reserved",
            # The number being reserved is a free pool number, not yet anyone's: shown.
            (Param("number", Kind.text), Param("minutes", Kind.integer, _reservation_minutes)),
            {"zh-CN": "号码预留成功", "en": "Number reserved"},
            {
                "zh-CN": "号码{number}已为您预留，请在{minutes}分钟内完成办理，逾期将自动释放。",
                "en": "Number {number} is reserved for you. Please complete your order "
                "within {minutes} minutes, or the reservation will be released.",
            },
        ),
        Template(
            "password_changed",
            (Param("number", Kind.phone),),
            {"zh-CN": "服务密码已修改", "en": "Service password changed"},
            {
                "zh-CN": "您的号码{number}的服务密码已修改成功。如非本人操作，请立即联系客服。",
                "en": "The service password of {number} has been changed. "
                "If this was not you, contact customer service immediately.",
            },
        ),
    )
}


def get_template(code: str) -> Template:
    template = TEMPLATES.get(code)
    if template is None:
        raise ValidationError(_("Unknown message template {template}"), template=code)
    return template


def _invalid(template: Template, name: str) -> ValidationError:
    return ValidationError(
        _("The parameter {param} of the template {template} is not valid"),
        param=name,
        template=template.code,
    )


def _check(template: Template, param: Param, value: Any) -> Any:
    """``value`` as stored, or a ValidationError naming the parameter (never its value:
    it may be a one-time code or a phone number)."""
    if param.kind in (Kind.integer, Kind.money):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(template, param.name)
        if param.kind is Kind.integer and value < 0:
            raise _invalid(template, param.name)
        return value
    if not isinstance(value, str):
        raise _invalid(template, param.name)
    text = value.strip()
    if not text or len(text) > _MAX_TEXT:
        raise _invalid(template, param.name)
    if param.kind is Kind.otp:
        if not _DIGITS.match(text):
            raise _invalid(template, param.name)
        return crypto.encrypt(text, ENCRYPTION_PURPOSE)
    return text


def prepare(
    code: str, params: Mapping[str, Any] | None, locale: str | None
) -> tuple[Template, dict[str, Any], str]:
    """Validate a request; returns the template, the parameters as stored (defaults filled
    in, secrets encrypted) and the normalised locale."""
    template = get_template(code)
    given = dict(params or {})
    for name in given:
        if template.param(name) is None:
            raise ValidationError(
                _("The template {template} has no parameter {param}"),
                template=code,
                param=name,
            )
    stored: dict[str, Any] = {}
    for param in template.params:
        if param.name in given and given[param.name] is not None:
            stored[param.name] = _check(template, param, given[param.name])
        elif param.default is not None:
            stored[param.name] = _check(template, param, param.default())
        else:
            raise ValidationError(
                _("The template {template} needs the parameter {param}"),
                template=code,
                param=param.name,
            )
    return template, stored, normalize_locale(locale or DEFAULT_LOCALE)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    redacted_subject: str
    redacted_body: str


def _shown(param: Param, value: Any, *, reveal: bool) -> str:
    if param.kind is Kind.money:
        return f"{to_major(int(value))}"
    if param.kind is Kind.phone:
        return mask_phone(str(value))
    if param.kind is Kind.otp:
        return crypto.decrypt(str(value), ENCRYPTION_PURPOSE) if reveal else HIDDEN
    return str(value)


def render(code: str, stored: Mapping[str, Any], locale: str) -> Rendered:
    """The template ``code`` in ``locale`` with the stored parameters."""
    template = get_template(code)
    loc = normalize_locale(locale)
    full = {p.name: _shown(p, stored[p.name], reveal=True) for p in template.params}
    redacted = {p.name: _shown(p, stored[p.name], reveal=False) for p in template.params}
    subject, body = template.subject[loc], template.body[loc]
    return Rendered(
        subject=subject.format(**full),
        body=body.format(**full),
        redacted_subject=subject.format(**redacted),
        redacted_body=body.format(**redacted),
    )
