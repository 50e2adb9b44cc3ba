"""Templates: validation before anything is written, rendering in both languages, secrets
encrypted at rest and hidden in the stored text."""

from __future__ import annotations

import pytest

from teleserve.core.errors import ValidationError
from teleserve.notify.templates import HIDDEN, TEMPLATES, prepare, render

SAMPLES = {
    "otp": {"code": "482913"},
    "payment_received": {"number": "13800138000", "amount": 5000, "balance": 12345},
    "balance_low": {"number": "13800138000", "balance": 300},
    "number_reserved": {"number": "13912345678"},
    "password_changed": {"number": "13800138000"},
}


def test_every_template_has_a_sample_here():
    assert set(SAMPLES) == set(TEMPLATES)


def test_otp_in_chinese(settings):
    _t, stored, locale = prepare("otp", {"code": "482913"}, "zh-CN")
    text = render("otp", stored, locale)
    assert text.subject == "验证码"
    assert text.body == "您的验证码是482913，5分钟内有效。请勿泄露给他人。"
    assert text.redacted_body == f"您的验证码是{HIDDEN}，5分钟内有效。请勿泄露给他人。"


def test_otp_in_english(settings):
    _t, stored, locale = prepare("otp", {"code": "482913", "minutes": 10}, "en-US,en;q=0.9")
    assert locale == "en"
    text = render("otp", stored, locale)
    assert text.subject == "Verification code"
    assert text.body == (
        "Your verification code is 482913, valid for 10 minutes. Do not share it with anyone."
    )
    assert "482913" not in text.redacted_body


def test_otp_validity_defaults_to_the_operator_setting(settings):
    from teleserve.core.settings import use_settings

    use_settings(settings.model_copy(update={"otp_valid_seconds": 600}))
    _t, stored, _loc = prepare("otp", {"code": "1234"}, None)
    assert stored["minutes"] == 10


def test_the_code_is_stored_encrypted(settings):
    _t, stored, _loc = prepare("otp", {"code": "482913"}, "zh-CN")
    assert "482913" not in str(stored)
    assert render("otp", stored, "zh-CN").body.startswith("您的验证码是482913")


def test_unknown_locale_falls_back_to_chinese(settings):
    _t, _stored, locale = prepare("otp", {"code": "1234"}, "fr")
    assert locale == "zh-CN"


def test_money_in_yuan_and_numbers_masked(settings):
    _t, stored, _loc = prepare("payment_received", SAMPLES["payment_received"], "zh-CN")
    body = render("payment_received", stored, "zh-CN").body
    assert body == "缴费成功：您为号码138****8000缴费50.00元，当前余额123.45元。感谢您的使用！"
    en = render("payment_received", stored, "en").body
    assert "CNY 50.00" in en and "138****8000" in en


@pytest.mark.parametrize("code", sorted(SAMPLES))
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_template_renders(settings, code, locale):
    _t, stored, loc = prepare(code, SAMPLES[code], locale)
    text = render(code, stored, loc)
    assert text.subject and text.body and "{" not in text.body
    assert "13800138000" not in text.body  # phone numbers of customers are masked


@pytest.mark.parametrize(
    ("code", "params", "fragment"),
    [
        ("nope", {}, "Unknown message template nope"),
        ("otp", {}, "needs the parameter code"),
        ("otp", {"code": "12ab56"}, "parameter code of the template otp is not valid"),
        ("otp", {"code": "123456", "extra": 1}, "has no parameter extra"),
        ("payment_received", {"number": "13800138000", "amount": "50", "balance": 1}, "amount"),
        ("payment_received", {"number": "13800138000", "amount": 1.5, "balance": 1}, "amount"),
        ("number_reserved", {"number": "13912345678", "minutes": -1}, "minutes"),
        ("number_reserved", {"number": "   "}, "number"),
        ("password_changed", {"number": True}, "number"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_error(settings, code, params, fragment):
    with pytest.raises(ValidationError) as caught:
        prepare(code, params, "zh-CN")
    assert fragment in str(caught.value)
    assert "12ab56" not in str(caught.value)  # a value is never echoed back


def test_errors_are_translated(settings):
    with pytest.raises(ValidationError) as caught:
        prepare("otp", {}, "zh-CN")
    assert caught.value.render("zh-CN") == "消息模板otp缺少参数code"
