"""The customer handlers (1001, 1002, 1003, 1010, 1015) over real TCP, on the real
domains: customers registered with a password and an ID card, lines in the inventory, a
balance in the ledger. Every answer and error code these serv_types can give, the
out-of-service rule, the serial record of 1002/1003, tokens bound to their terminal, and
no secret in logs or audit details."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, func, select, update

from teleserve.catalog import service as catalog_service
from teleserve.core import crypto
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.clock import utcnow
from teleserve.core.errors import (
    AuthenticationFailed,
    Conflict,
    Locked,
    PermissionDenied,
    RateLimited,
    ValidationError,
)
from teleserve.core.settings import Settings, use_settings
from teleserve.core.throttle import Throttle, set_throttle
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.models import session_table
from teleserve.customers.schemas import AccountSpec
from teleserve.gateway.errors import TspError
from teleserve.gateway.frame import Frame
from teleserve.gateway.handlers import customer
from teleserve.gateway.handlers.customer_errors import as_tsp, tsp_error
from teleserve.gateway.server import GatewayThread
from teleserve.inventory import service as inventory
from teleserve.notify.models import NotifyMessage
from teleserve.payments import service as payments
from teleserve.payments.schemas import PaymentRequest
from teleserve.terminals import service as terminals
from tests.catalog.helpers import CATALOG_ADMIN, standard_catalog
from tests.customers.conftest import make_id
from tests.terminals.conftest import ADMIN, GZ_OPS, install_key, register, tree  # noqa: F401 (fixtures)

from .test_server import business, kiosk, sign_on, start  # noqa: F401
from .tsp_client import Client, body_of, build, mac_ok
from .vectors import MASTER_KEY, TERMINAL

OTHER_TERMINAL = "KIOSK-0002"
HALL = "/TS/GD/GZ/GZ01/"
PASSWORD = "382915"
ZHANG = "13800138000"  # prepaid, 张三, password, VAS_CLIP, balance 5000
LI = "13900139000"  # postpaid, 李四, barred for arrears, credit limit 20000
WANG = "13700137000"  # 王五: a password but no line in the inventory
NOBODY = "13600136000"


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[Throttle]:
    throttle = Throttle()
    previous = set_throttle(throttle)
    yield throttle
    set_throttle(previous)


@pytest.fixture
def gw(start: Callable[..., GatewayThread], kiosk: str) -> GatewayThread:  # noqa: F811
    return start(handlers=customer.HANDLERS)


@pytest.fixture
def other_kiosk(register: Callable[..., Any], engine: Engine) -> str:  # noqa: F811
    register(OTHER_TERMINAL)
    install_key(engine, OTHER_TERMINAL, MASTER_KEY)
    return OTHER_TERMINAL


def tune(settings: Settings, **changes: Any) -> None:
    """Change the process settings the handlers read (reset by the settings fixture)."""
    use_settings(settings.model_copy(update=changes))


# -- the world: customers, lines, a balance ---------------------------------------------


@dataclass
class Person:
    customer_id: str
    account_id: str
    number: str
    id_number: str
    name: str


@pytest.fixture
def people(make_uow: Callable[..., UnitOfWork]) -> dict[str, Person]:
    with make_uow(CATALOG_ADMIN) as uow:
        catalog_service.create_offerings_batch(uow, standard_catalog())
        uow.commit()
    found: dict[str, Person] = {}
    specs = [
        (ZHANG, "张三", "prepaid", 0, "P_BASIC", ["VAS_CLIP"]),
        (LI, "李四", "postpaid", 20000, "P_POST", []),
        (WANG, "王五", "prepaid", 0, None, []),
    ]
    for seq, (number, name, kind, limit, plan, vas) in enumerate(specs, start=101):
        id_number = make_id(seq=f"{seq:03d}")
        with make_uow(ADMIN) as uow:
            registered = customers.register_individual(
                uow,
                name=name,
                id_number=id_number,
                org_unit_id="GZ01",
                org_path=HALL,
                mobile=number,
                accounts=[AccountSpec(kind=kind, credit_limit=limit)],
            )
            account = registered.accounts[0].id
            customers.set_service_password(uow, number, registered.id, HALL, PASSWORD)
            if plan is not None:
                inventory.create_subscription(
                    uow,
                    {
                        "service_number": number,
                        "kind": "mobile",
                        "customer_id": registered.id,
                        "billing_account_id": account,
                        "org_path": HALL,
                        "plan_code": plan,
                        "vas_codes": vas,
                        "customer_category": "individual",
                        "account_type": kind,
                        "status": "active",
                    },
                )
            uow.commit()
        found[number] = Person(registered.id, account, number, id_number, name)
    with make_uow(ADMIN) as uow:
        zhang = found[ZHANG]
        payments.open_customer_account(uow, zhang.account_id, zhang.customer_id, HALL)
        payments.record_payments(
            uow,
            [PaymentRequest("test:topup", "web", 5000, billing_account_id=zhang.account_id)],
        )
        li = inventory.find_by_service_number(uow, LI)
        inventory.add_bar(uow, li.id, "credit", "arrears")
        uow.commit()
    return found


@pytest.fixture
def codes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(recipient, code) of every one-time code queued; the SMS is still queued."""
    sent: list[tuple[str, str]] = []
    original = customers._queue_otp_sms

    def capture(uow: UnitOfWork, recipient: str, code: str, *owner: str) -> None:
        sent.append((recipient, code))
        original(uow, recipient, code, *owner)

    monkeypatch.setattr(customers, "_queue_otp_sms", capture)
    return sent


# -- a terminal speaking TSP/1 ---------------------------------------------------------


class Kiosk:
    """One signed-on business connection; serials continue per terminal across
    connections of the same test (recorded serials must not collide)."""

    def __init__(self, gw: GatewayThread, serials: Iterator[int], terminal: str) -> None:
        self.terminal = terminal
        self.serials = serials
        self.client: Client = business(gw)
        self.sid, self.key = sign_on(self.client, next(serials), terminal)

    def raw(self, serv_type: int, body: dict[str, Any], serial: int | None = None) -> bytes:
        serial = next(self.serials) if serial is None else serial
        return build(self.terminal, serial, serv_type, body, key=self.key, session_id=self.sid)

    def send(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        reply = self.client.ask(raw)
        assert mac_ok(reply, self.key)
        return reply.header.err_number, body_of(reply)

    def ask(self, serv_type: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.send(self.raw(serv_type, body))

    def frame(self, serv_type: int, body: dict[str, Any]) -> Frame:
        return self.client.ask(self.raw(serv_type, body))

    def login(self, number: str = ZHANG, secret: str = PASSWORD, **extra: Any) -> str:
        err, body = self.ask(
            1001, {"msisdn": number, "method": "password", "secret": secret, **extra}
        )
        assert err == "00000", body
        return str(body["customer_token"])

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def open_kiosk(gw: GatewayThread) -> Iterator[Callable[..., Kiosk]]:
    counters: dict[str, Iterator[int]] = {}
    opened: list[Kiosk] = []

    def factory(terminal: str = TERMINAL) -> Kiosk:
        k = Kiosk(gw, counters.setdefault(terminal, itertools.count(1)), terminal)
        opened.append(k)
        return k

    yield factory
    for k in opened:
        k.close()


def code_of(err: str, body: dict[str, Any]) -> str:
    assert body["error"]["code"] == err
    return err


def notify_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(NotifyMessage)) or 0)


def audit_rows(engine: Engine, action: str | None = None) -> list[tuple[str, str, str, Any]]:
    query = select(
        AuditRecord.action, AuditRecord.subject_type, AuditRecord.subject_id, AuditRecord.detail
    ).order_by(AuditRecord.at, AuditRecord.id)
    if action is not None:
        query = query.where(AuditRecord.action == action)
    with engine.connect() as conn:
        return [
            (r.action, r.subject_type, r.subject_id, json.loads(r.detail))
            for r in conn.execute(query)
        ]


# -- 1001 CUSTOMER_LOGIN -----------------------------------------------------------------


def test_password_login_answers_a_token_of_level_1(open_kiosk, people):
    k = open_kiosk()
    err, body = k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": PASSWORD})
    assert err == "00000"
    assert list(body) == ["customer_token", "level", "expires_in_s", "customer_name"]
    token = body["customer_token"]
    assert len(token) == 64 and int(token, 16) >= 0 and token == token.lower()
    assert (body["level"], body["expires_in_s"], body["customer_name"]) == (1, 300, "张*")
    assert k.ask(1010, {"customer_token": token})[0] == "00000"


def test_a_wrong_secret_and_an_unknown_number_answer_the_same_20001(open_kiosk, people):
    k = open_kiosk()
    wrong = k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": "000111"})
    unknown = k.ask(1001, {"msisdn": NOBODY, "method": "password", "secret": PASSWORD})
    assert wrong[0] == unknown[0] == code_of("20001", wrong[1])
    assert wrong[1] == unknown[1]
    assert wrong[1]["error"]["details"] == {}


def test_failures_lock_the_number_20002_with_retry_after(open_kiosk, people, engine):
    k = open_kiosk()
    answers = [
        k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": "000111"}) for _ in range(5)
    ]
    assert [err for err, _ in answers] == ["20001"] * 4 + ["20002"]
    assert 890 <= answers[-1][1]["error"]["details"]["retry_after_s"] <= 900
    # Locked: even the right password is refused, and the lock outlived the rollbacks.
    err, body = k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": PASSWORD})
    assert code_of(err, body) == "20002"
    assert body["error"]["details"]["retry_after_s"] > 0
    assert len(audit_rows(engine, "customer.login_failed")) == 5
    assert len(audit_rows(engine, "customer.locked")) == 1


def test_the_per_terminal_throttle_is_20012(open_kiosk, people, settings):
    tune(settings, customer_auth_per_terminal_per_minute=2)
    k = open_kiosk()
    k.login()
    k.login()
    err, body = k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": PASSWORD})
    assert code_of(err, body) == "20012"
    assert 1 <= body["error"]["details"]["retry_after_s"] <= 60


def test_otp_login(open_kiosk, people, codes):
    k = open_kiosk()
    assert k.ask(1002, {"msisdn": ZHANG}) == ("00000", {"expires_in_s": 300})
    ((recipient, code),) = codes
    assert recipient == ZHANG
    err, body = k.ask(1001, {"msisdn": ZHANG, "method": "otp", "secret": code})
    assert (err, body["level"], body["customer_name"]) == ("00000", 1, "张*")
    # A used code cannot log in again.
    again = k.ask(1001, {"msisdn": ZHANG, "method": "otp", "secret": code})
    assert code_of(*again) == "20001"


def test_id_card_login_then_a_second_factor_gives_level_2(open_kiosk, people, engine):
    zhang = people[ZHANG]
    card = {
        "msisdn": ZHANG,
        "method": "id_card",
        "id_number": zhang.id_number,
        "id_name": zhang.name,
        "reader_id": "IDR-7",
        "face_match_score": 80,  # the default pass mark
    }
    k = open_kiosk()
    err, body = k.ask(1001, card)
    assert (err, body["level"]) == ("00000", 1)
    token = body["customer_token"]
    same = k.ask(1001, {**card, "customer_token": token})
    assert code_of(*same) == "10005"
    assert same[1]["error"]["details"] == {"fields": ["method"]}
    err, raised = k.ask(
        1001, {"msisdn": ZHANG, "method": "password", "secret": PASSWORD, "customer_token": token}
    )
    assert (err, raised["customer_token"], raised["level"]) == ("00000", token, 2)
    ((_, subject_type, subject_id, detail),) = audit_rows(engine, "gateway.id_card_read")
    assert (subject_type, subject_id) == ("customer", zhang.customer_id)
    assert detail == {
        "service_number": "138****8000",
        "terminal_id": TERMINAL,
        "reader_id": "IDR-7",
        "level": 1,
    }


def test_a_face_match_below_the_pass_mark_fails(open_kiosk, people, settings):
    zhang = people[ZHANG]
    card = {
        "msisdn": ZHANG,
        "method": "id_card",
        "id_number": zhang.id_number,
        "id_name": zhang.name,
        "reader_id": "IDR-7",
        "face_match_score": 79,
    }
    k = open_kiosk()
    assert code_of(*k.ask(1001, card)) == "20001"
    tune(settings, customer_face_match_pass_mark=70)
    assert k.ask(1001, card)[0] == "00000"


def test_a_second_factor_for_another_number_is_20001(open_kiosk, people):
    k = open_kiosk()
    token = k.login(ZHANG)
    err, body = k.ask(
        1001, {"msisdn": LI, "method": "password", "secret": PASSWORD, "customer_token": token}
    )
    assert code_of(err, body) == "20001"
    assert k.ask(1010, {"customer_token": token})[1]["msisdn"] == ZHANG  # still level 1


def test_login_is_refused_10005_without_its_method_fields(open_kiosk, people):
    k = open_kiosk()
    err, body = k.ask(1001, {"msisdn": ZHANG, "method": "id_card"})
    assert code_of(err, body) == "10005"
    assert body["error"]["details"]["fields"] == [
        "id_number",
        "id_name",
        "reader_id",
        "face_match_score",
    ]


# -- tokens belong to the terminal ---------------------------------------------------------


def test_a_token_from_another_terminal_is_20010(open_kiosk, people, other_kiosk, engine):
    a = open_kiosk()
    b = open_kiosk(OTHER_TERMINAL)
    token = a.login()
    assert code_of(*b.ask(1010, {"customer_token": token})) == "20010"
    assert code_of(*b.ask(1003, {"customer_token": token})) == "20010"
    second = {"msisdn": ZHANG, "method": "password", "secret": PASSWORD, "customer_token": token}
    assert code_of(*b.ask(1001, second)) == "20010"
    # Untouched at its own terminal: not ended, not raised.
    err, body = a.ask(1010, {"customer_token": token})
    assert (err, body["msisdn"]) == ("00000", ZHANG)


def test_a_new_login_ends_the_previous_token_and_tokens_survive_a_re_sign_on(open_kiosk, people):
    first = open_kiosk()
    zhang = first.login(ZHANG)
    first.close()
    again = open_kiosk()  # a new connection and session of the same terminal
    assert again.ask(1010, {"customer_token": zhang})[0] == "00000"
    li = again.login(LI)
    assert code_of(*again.ask(1010, {"customer_token": zhang})) == "20010"
    assert again.ask(1010, {"customer_token": li})[0] == "00000"


def test_an_idle_token_is_20010(open_kiosk, people, engine):
    k = open_kiosk()
    token = k.login()
    with engine.begin() as conn:
        conn.execute(
            update(session_table)
            .where(session_table.c.token_hash == crypto.hash_token(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert code_of(*k.ask(1010, {"customer_token": token})) == "20010"


# -- 1002 OTP_SEND ---------------------------------------------------------------------------


def test_otp_send_answers_alike_for_unknown_numbers_and_a_resend_sends_nothing(
    open_kiosk, people, codes, engine
):
    k = open_kiosk()
    assert k.ask(1002, {"msisdn": NOBODY}) == ("00000", {"expires_in_s": 300})
    assert codes == [] and notify_count(engine) == 0  # nobody's number: no SMS
    raw = k.raw(1002, {"msisdn": ZHANG})
    first = k.client.ask(raw)
    assert (first.header.err_number, body_of(first)) == ("00000", {"expires_in_s": 300})
    assert notify_count(engine) == 1
    resent = k.client.ask(raw)  # the same serial and bytes: the recorded answer
    assert resent.body == first.body and mac_ok(resent, k.key)
    assert len(codes) == 1 and notify_count(engine) == 1
    # A new request within the cooldown: 20012 (recorded too).
    raw = k.raw(1002, {"msisdn": ZHANG})
    err, body = k.send(raw)
    assert code_of(err, body) == "20012"
    assert 1 <= body["error"]["details"]["retry_after_s"] <= 60
    assert k.send(raw) == (err, body)
    assert len(codes) == 1 and notify_count(engine) == 1


def test_otp_send_to_a_locked_number_is_20002(open_kiosk, people, codes):
    k = open_kiosk()
    for _ in range(5):
        k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": "000111"})
    err, body = k.ask(1002, {"msisdn": ZHANG})
    assert code_of(err, body) == "20002"
    assert body["error"]["details"]["retry_after_s"] > 0
    assert codes == []


# -- 1003 CUSTOMER_LOGOUT --------------------------------------------------------------------


def test_logout_ends_the_token_and_is_recorded(open_kiosk, people):
    k = open_kiosk()
    token = k.login()
    raw = k.raw(1003, {"customer_token": token})
    assert k.send(raw) == ("00000", {})
    assert k.send(raw) == ("00000", {})  # the recorded answer
    assert code_of(*k.ask(1010, {"customer_token": token})) == "20010"
    assert code_of(*k.ask(1003, {"customer_token": token})) == "20010"  # a new logout


# -- 1010 ACCOUNT_SUMMARY ---------------------------------------------------------------------


def test_account_summary_of_a_prepaid_line(open_kiosk, people):
    k = open_kiosk()
    err, body = k.ask(1010, {"customer_token": k.login(ZHANG)})
    assert err == "00000"
    assert body == {
        "msisdn": ZHANG,
        "status": "active",
        "bars": [],
        "plan": {"offer_id": "P_BASIC", "name": "P_BASIC套餐"},
        "balance": 5000,
        "vas": [{"offer_id": "VAS_CLIP", "name": "VAS_CLIP套餐"}],
    }  # no credit_limit (prepaid), no unbilled or points (no source)


def test_account_summary_of_a_barred_postpaid_line(open_kiosk, people):
    k = open_kiosk()
    err, body = k.ask(1010, {"customer_token": k.login(LI)})
    assert err == "00000"
    assert body == {
        "msisdn": LI,
        "status": "suspended",
        "bars": ["credit"],
        "plan": {"offer_id": "P_POST", "name": "P_POST套餐"},
        "balance": 0,  # no ledger account yet: nothing was ever paid
        "vas": [],
        "credit_limit": 20000,
    }


def test_account_summary_without_a_line_is_20003(open_kiosk, people):
    k = open_kiosk()
    assert code_of(*k.ask(1010, {"customer_token": k.login(WANG)})) == "20003"


def test_account_summary_of_a_terminated_line(open_kiosk, people, make_uow):
    k = open_kiosk()
    token = k.login(ZHANG)
    with make_uow(ADMIN) as uow:
        line = inventory.find_by_service_number(uow, ZHANG)
        inventory.terminate(uow, line.id, "customer left")
        uow.commit()
    err, body = k.ask(1010, {"customer_token": token})
    assert (err, body["status"]) == ("00000", "terminated")


# -- 1015 MSISDN_CHECK -------------------------------------------------------------------------


def test_msisdn_check_tells_payable_with_the_masked_name_and_is_audited(
    open_kiosk, people, engine, make_uow
):
    k = open_kiosk()
    assert k.ask(1015, {"msisdn": ZHANG}) == ("00000", {"payable": True, "customer_name": "张*"})
    assert k.ask(1015, {"msisdn": LI}) == ("00000", {"payable": True, "customer_name": "李*"})
    for number in (NOBODY, WANG):  # no such customer / a customer without a line
        assert k.ask(1015, {"msisdn": number}) == (
            "00000",
            {"payable": False, "customer_name": ""},
        )
    with make_uow(ADMIN) as uow:
        inventory.terminate(uow, inventory.find_by_service_number(uow, LI).id, "left")
        uow.commit()
    assert k.ask(1015, {"msisdn": LI}) == ("00000", {"payable": False, "customer_name": ""})
    rows = audit_rows(engine, "gateway.msisdn_checked")
    assert len(rows) == 5
    _, subject_type, subject_id, detail = rows[0]
    assert subject_type == "service_number"
    assert subject_id == crypto.blind_index(ZHANG, "service_number")
    assert detail == {
        "service_number": "138****8000",
        "terminal_id": TERMINAL,
        "payable": True,
        "customer_id": people[ZHANG].customer_id,
    }
    assert rows[2][3] == {
        "service_number": "136****6000",
        "terminal_id": TERMINAL,
        "payable": False,
    }
    with engine.connect() as conn:
        actors = set(
            conn.scalars(
                select(AuditRecord.actor_id).where(AuditRecord.action == "gateway.msisdn_checked")
            )
        )
    assert actors == {TERMINAL}


def test_msisdn_check_is_rate_limited_per_terminal(open_kiosk, people, other_kiosk, settings):
    tune(settings, msisdn_check_per_minute_per_terminal=3)
    a = open_kiosk()
    b = open_kiosk(OTHER_TERMINAL)
    for _ in range(3):
        assert a.ask(1015, {"msisdn": ZHANG})[0] == "00000"
    err, body = a.ask(1015, {"msisdn": NOBODY})
    assert code_of(err, body) == "20012"
    assert 1 <= body["error"]["details"]["retry_after_s"] <= 60
    assert b.ask(1015, {"msisdn": ZHANG})[0] == "00000"  # another terminal's own count


# -- out of service ---------------------------------------------------------------------------


def test_out_of_service_refuses_all_but_logout(open_kiosk, people, make_uow, codes):
    k = open_kiosk()
    token = k.login()
    with make_uow(GZ_OPS) as uow:
        terminals.put_out_of_service(uow, TERMINAL)
        uow.commit()
    requests: list[tuple[int, dict[str, Any]]] = [
        (1001, {"msisdn": ZHANG, "method": "password", "secret": PASSWORD}),
        (1002, {"msisdn": ZHANG}),
        (1010, {"customer_token": token}),
        (1015, {"msisdn": ZHANG}),
    ]
    for serv_type, body in requests:
        assert code_of(*k.ask(serv_type, body)) == "10009", serv_type
    assert codes == []
    assert k.ask(1003, {"customer_token": token}) == ("00000", {})


# -- no secret in logs or audit ------------------------------------------------------------------


def test_no_token_or_secret_reaches_the_logs_or_the_audit(open_kiosk, people, codes, engine):
    zhang = people[ZHANG]
    k = open_kiosk()
    with structlog.testing.capture_logs() as logs:
        k.ask(1001, {"msisdn": ZHANG, "method": "password", "secret": "000111"})
        k.ask(1001, {"msisdn": NOBODY, "method": "password", "secret": "000222"})
        token = k.login()
        k.ask(1002, {"msisdn": ZHANG})
        code = codes[0][1]
        k.ask(1001, {"msisdn": ZHANG, "method": "otp", "secret": code, "customer_token": token})
        card = {
            "msisdn": ZHANG,
            "method": "id_card",
            "id_number": zhang.id_number,
            "id_name": zhang.name,
            "reader_id": "IDR-7",
            "face_match_score": 99,
        }
        card_token = k.ask(1001, card)[1]["customer_token"]
        k.ask(1010, {"customer_token": card_token})
        k.ask(1015, {"msisdn": ZHANG})
        k.ask(1003, {"customer_token": card_token})
    secrets = [PASSWORD, "000111", "000222", code, token, card_token, zhang.id_number]
    numbers = [ZHANG, NOBODY]
    with engine.connect() as conn:  # what the gateway's requests audited (set-up apart)
        details = [
            str(d)
            for d in conn.scalars(
                select(AuditRecord.detail).where(AuditRecord.actor_id == TERMINAL)
            )
        ]
    assert len(details) >= 8
    assert any("login" in str(entry) for entry in logs)  # something was logged
    texts = details + [json.dumps(entry, default=str, ensure_ascii=False) for entry in logs]
    for text in texts:
        for value in secrets + numbers:
            assert value not in text, (value, text)


# -- the error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "details"),
    [
        (AuthenticationFailed("x", code="customer_auth_failed"), "20001", {}),
        (Locked("x", code="customer_locked", retry_after_s=42), "20002", {"retry_after_s": 42}),
        (AuthenticationFailed("x", code="customer_session_expired"), "20010", {}),
        (PermissionDenied("x", code="customer_level_required"), "20011", {}),
        (
            RateLimited("x", code="customer_rate_limited", retry_after_s=7),
            "20012",
            {"retry_after_s": 7},
        ),
        (RateLimited("x", retry_after_s=3), "20012", {"retry_after_s": 3}),
        (ValidationError("x", code="same_factor"), "10005", {"fields": ["method"]}),
    ],
)
def test_customer_errors_map_onto_tsp_codes(error, code, details):
    mapped = tsp_error(error)
    assert mapped is not None
    assert (mapped.code, mapped.details) == (code, details)


def test_other_errors_are_not_customer_errors():
    assert tsp_error(Conflict("x", code="service_number_taken")) is None
    with pytest.raises(Conflict), as_tsp():
        raise Conflict("x", code="service_number_taken")


def test_a_level_2_requirement_is_20011(people, make_uow, engine):
    terminal = Actor(ActorKind.terminal, TERMINAL, HALL, frozenset(), TERMINAL)
    with make_uow(terminal) as uow:
        login = customers.login_with_password(uow, ZHANG, PASSWORD, TERMINAL)
        uow.commit()
    with make_uow(terminal) as uow, pytest.raises(TspError) as refused, as_tsp():
        customers.check_terminal_token(uow, login.token, TERMINAL, level=2)
    assert refused.value.code == "20011"
