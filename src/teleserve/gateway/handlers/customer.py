"""Customer authentication and account queries on the business channel (1001–1003, 1010,
1015): ``customer_auth`` (login, one-time code, logout) and ``customer_account`` (account
summary, number check). 1002 and 1003 are state-changing: the dispatcher records their
answers (``dispatch._recorded``); 1001, 1010 and 1015 are processed again when resent."""

from __future__ import annotations

from teleserve.gateway.dispatch import Handler
from teleserve.gateway.handlers import customer_account, customer_auth

HANDLERS: dict[int, Handler] = {
    1001: customer_auth.customer_login,
    1002: customer_auth.otp_send,
    1003: customer_auth.customer_logout,
    1010: customer_account.account_summary,
    1015: customer_account.msisdn_check,
}
