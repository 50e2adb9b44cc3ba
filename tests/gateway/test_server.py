"""The TSP/1 servers over real TCP on loopback: sign-on with the vector key, keepalive,
sign-off, the refusals in the order of checks, sessions per connection, the
management channel's one-shot exchange, the serial record rule and TLS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from teleserve.core.settings import Mode, Settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Handler, Result
from teleserve.gateway.errors import TspError
from teleserve.gateway.mac import derive_session_key
from teleserve.gateway.server import GatewayThread, is_loopback
from teleserve.terminals import service
from teleserve.terminals.serials import get_records
from tests.terminals.conftest import GZ_OPS, install_key, register, tree  # noqa: F401

from .tsp_client import Client, body_of, build, mac_ok, now_ms
from .vectors import CLIENT_NONCE, MASTER_KEY, TERMINAL

SIGN_ON_BODY = {"client_nonce": CLIENT_NONCE, "software_version": "1.0.0", "last_serial": 0}
TOKEN = "ab" * 16


@pytest.fixture
def kiosk(register: Callable[..., Any], engine: Engine) -> str:  # noqa: F811
    register(TERMINAL)
    install_key(engine, TERMINAL, MASTER_KEY)
    return TERMINAL


@pytest.fixture
def start(engine: Engine, settings: Settings) -> Iterator[Callable[..., GatewayThread]]:
    running: list[GatewayThread] = []

    def factory(handlers: dict[int, Handler] | None = None, **changes: Any) -> GatewayThread:
        s = settings.model_copy(
            update={
                "gateway_business_port": 0,
                "gateway_management_port": 0,
                "gateway_terminal_cache_s": 0,
                **changes,
            }
        )
        # Only the handlers a test installs: the mechanics under test, not the areas.
        thread = GatewayThread(engine, s, handlers=handlers if handlers is not None else {})
        thread.bound = thread.start()  # type: ignore[attr-defined]
        running.append(thread)
        return thread

    yield factory
    for thread in running:
        thread.stop()


@pytest.fixture
def gw(start: Callable[..., GatewayThread], kiosk: str) -> GatewayThread:
    return start()


def business(gw: GatewayThread) -> Client:
    return Client(gw.bound.business_port)  # type: ignore[attr-defined]


def management(gw: GatewayThread) -> Client:
    return Client(gw.bound.management_port)  # type: ignore[attr-defined]


def sign_on(client: Client, serial: int = 1, terminal: str = TERMINAL) -> tuple[str, bytes]:
    reply = client.ask(build(terminal, serial, 1, SIGN_ON_BODY, key=MASTER_KEY))
    assert reply.header.err_number == "00000", body_of(reply)
    assert mac_ok(reply, MASTER_KEY)
    body = body_of(reply)
    key = derive_session_key(
        MASTER_KEY, bytes.fromhex(CLIENT_NONCE), bytes.fromhex(body["server_nonce"])
    )
    return body["session_id"], key


# -- sign-on, keepalive, sign-off ------------------------------------------------------


def test_sign_on_keepalive_sign_off(gw: GatewayThread):
    with business(gw) as c:
        reply = c.ask(build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert reply.header.err_number == "00000"
        assert (reply.header.direction, reply.header.serial, reply.header.serv_type) == ("R", 1, 1)
        assert mac_ok(reply, MASTER_KEY)
        body = body_of(reply)
        assert list(body) == [
            "session_id",
            "server_nonce",
            "keepalive_s",
            "server_time_ms",
            "last_serial",
        ]
        assert reply.header.session_id == body["session_id"] != "00000000"
        assert (body["keepalive_s"], body["last_serial"]) == (30, 0)
        assert abs(body["server_time_ms"] - now_ms()) < 5_000
        key = derive_session_key(
            MASTER_KEY, bytes.fromhex(CLIENT_NONCE), bytes.fromhex(body["server_nonce"])
        )
        sid = body["session_id"]

        alive = c.ask(build(TERMINAL, 2, 3, {}, key=key, session_id=sid))
        assert alive.header.err_number == "00000"
        assert alive.header.session_id == sid
        assert mac_ok(alive, key)
        assert set(body_of(alive)) == {"server_time_ms"}

        off = c.ask(build(TERMINAL, 3, 2, {}, key=key, session_id=sid))
        assert (off.header.err_number, body_of(off)) == ("00000", {})
        assert mac_ok(off, key)
        assert c.closed_by_server()
    assert len(gw.gateway.dispatcher.sessions) == 0


def test_sign_on_reports_the_highest_recorded_serial(gw: GatewayThread, engine: Engine):
    from teleserve.terminals.serials import SerialRecord, insert_or_get

    with engine.begin() as conn:
        from teleserve.core.clock import utcnow

        insert_or_get(conn, [SerialRecord(TERMINAL, 41, 1003, "0" * 64, "00000", "{}", utcnow())])
    with business(gw) as c:
        reply = c.ask(build(TERMINAL, 50, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert body_of(reply)["last_serial"] == 41


def test_bad_fields_on_sign_on_are_10005_with_the_master_key(gw: GatewayThread):
    with business(gw) as c:
        bad = {**SIGN_ON_BODY, "client_nonce": "xyz"}
        reply = c.ask(build(TERMINAL, 1, 1, bad, key=MASTER_KEY))
        assert reply.header.err_number == "10005"
        assert body_of(reply)["error"]["details"] == {"fields": ["client_nonce"]}
        assert mac_ok(reply, MASTER_KEY) and reply.header.session_id == "00000000"
        sign_on(c, serial=2)  # still open: a failed SIGN_ON is answered, not fatal


# -- refusals --------------------------------------------------------------------------


def test_wrong_mac_is_10002_with_an_all_zero_mac_and_stays_open(gw: GatewayThread):
    with business(gw) as c:
        sid, key = sign_on(c)
        reply = c.ask(build(TERMINAL, 2, 3, {}, key=bytes(range(1, 33)), session_id=sid))
        assert reply.header.err_number == "10002"
        assert reply.mac == bytes(32) and reply.header.session_id == "00000000"
        assert (reply.header.terminal_id, reply.header.serial) == (TERMINAL, 2)
        again = c.ask(build(TERMINAL, 3, 3, {}, key=key, session_id=sid))
        assert again.header.err_number == "00000"


def test_unknown_terminal_is_10008_and_closed(gw: GatewayThread):
    with business(gw) as c:
        reply = c.ask(build("NOBODY", 1, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert reply.header.err_number == "10008"
        assert reply.mac == bytes(32)
        assert c.closed_by_server()


def test_disabled_terminal_is_10008_and_closed(gw: GatewayThread, make_uow):
    with make_uow(GZ_OPS) as uow:
        service.disable(uow, TERMINAL, "suspected compromise")
        uow.commit()
    with business(gw) as c:
        reply = c.ask(build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert (reply.header.err_number, reply.mac) == ("10008", bytes(32))
        assert c.closed_by_server()


def test_simulated_devices_are_refused_outside_demo_mode(
    start: Callable[..., GatewayThread], kiosk: str
):
    gw = start(mode=Mode.production)
    with business(gw) as c:
        sim = {**SIGN_ON_BODY, "device_mode": "sim"}
        reply = c.ask(build(TERMINAL, 1, 1, sim, key=MASTER_KEY))
        assert (reply.header.err_number, reply.mac) == ("10008", bytes(32))
        assert c.closed_by_server()
    with business(gw) as c:
        sign_on(c, serial=2)  # the same terminal with real devices is admitted


def test_out_of_service_terminal_still_signs_on(gw: GatewayThread, make_uow):
    with make_uow(GZ_OPS) as uow:
        service.put_out_of_service(uow, TERMINAL)
        uow.commit()
    with business(gw) as c:
        sign_on(c)


def test_stale_timestamp_is_10006_with_the_server_time(gw: GatewayThread):
    with business(gw) as c:
        stale = now_ms() - 301_000
        reply = c.ask(build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY, timestamp_ms=stale))
        assert reply.header.err_number == "10006"
        assert mac_ok(reply, MASTER_KEY)
        details = body_of(reply)["error"]["details"]
        assert abs(details["server_time_ms"] - now_ms()) < 5_000
        sign_on(c, serial=2)  # the connection stays open


def test_request_without_a_session_is_10007_and_stays_open(gw: GatewayThread):
    with business(gw) as c:
        reply = c.ask(build(TERMINAL, 1, 3, {}, key=MASTER_KEY, session_id="a1b2c3d4"))
        assert (reply.header.err_number, reply.mac) == ("10007", bytes(32))
        sign_on(c, serial=2)


def test_another_connections_session_is_10007(gw: GatewayThread):
    with business(gw) as first, business(gw) as other:
        sid, key = sign_on(first)
        reply = other.ask(build(TERMINAL, 2, 3, {}, key=key, session_id=sid))
        assert reply.header.err_number == "10007"


def test_serv_type_not_served_yet_is_10004(gw: GatewayThread):
    with business(gw) as c:
        sid, key = sign_on(c)
        reply = c.ask(build(TERMINAL, 2, 1010, {"customer_token": TOKEN}, key=key, session_id=sid))
        assert reply.header.err_number == "10004"
        assert mac_ok(reply, key) and reply.header.session_id == sid
        error = body_of(reply)["error"]
        assert (error["message"], error["message_zh"]) == ("unknown serv_type", "未知的交易类型")
        # a management serv_type on the business port is 10004 as well
        reply = c.ask(build(TERMINAL, 3, 9004, {"config_version": 0}, key=key, session_id=sid))
        assert reply.header.err_number == "10004"


def test_second_sign_on_closes_the_older_connection(gw: GatewayThread):
    with business(gw) as first, business(gw) as second:
        old_sid, _old_key = sign_on(first)
        new_sid, new_key = sign_on(second, serial=2)
        assert new_sid != old_sid
        assert first.closed_by_server()
        alive = second.ask(build(TERMINAL, 3, 3, {}, key=new_key, session_id=new_sid))
        assert alive.header.err_number == "00000"
    assert len(gw.gateway.dispatcher.sessions) in (0, 1)


def test_sign_on_on_the_same_connection_replaces_the_session(gw: GatewayThread):
    with business(gw) as c:
        old_sid, old_key = sign_on(c)
        new_sid, new_key = sign_on(c, serial=2)
        stale = c.ask(build(TERMINAL, 3, 3, {}, key=old_key, session_id=old_sid))
        assert stale.header.err_number == "10007"
        fresh = c.ask(build(TERMINAL, 4, 3, {}, key=new_key, session_id=new_sid))
        assert fresh.header.err_number == "00000"


@pytest.mark.parametrize("length", [0, 97, 1_048_673, 0xFFFFFFFF])
def test_bad_length_closes_without_an_answer(gw: GatewayThread, length: int):
    with business(gw) as c:
        c.send(length.to_bytes(4, "big") + b"x" * 200)
        assert c.frame() is None


def test_malformed_header_is_10001_and_closed(gw: GatewayThread):
    with business(gw) as c:
        good = build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY)
        bad = good[:4] + b"XX" + good[6:]
        reply = c.ask(bad)
        assert (reply.header.err_number, reply.mac) == ("10001", bytes(32))
        assert body_of(reply)["error"]["details"] == {"field": "magic"}
        assert c.closed_by_server()


def test_a_request_split_across_writes_is_assembled(gw: GatewayThread):
    with business(gw) as c:
        raw = build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY)
        for i in range(0, len(raw), 7):
            c.send(raw[i : i + 7])
            time.sleep(0.001)
        reply = c.frame()
        assert reply is not None and reply.header.err_number == "00000"


def test_idle_connection_is_closed_after_three_keepalives(
    start: Callable[..., GatewayThread], kiosk: str
):
    gw = start(gateway_keepalive_s=1)
    with business(gw) as c:
        sign_on(c)
        began = time.monotonic()
        assert c.closed_by_server()
        assert 2.5 < time.monotonic() - began < 6


def test_a_silent_connection_does_not_stall_others(gw: GatewayThread):
    with business(gw) as mute:
        mute.send(b"\x00\x00\x00\xbe")  # a length, then nothing: it waits alone
        with business(gw) as c:
            sid, key = sign_on(c)
            alive = c.ask(build(TERMINAL, 2, 3, {}, key=key, session_id=sid))
            assert alive.header.err_number == "00000"


# -- management channel ----------------------------------------------------------------


def test_management_is_one_request_one_answer_then_close(gw: GatewayThread):
    with management(gw) as c:
        reply = c.ask(build(TERMINAL, 5, 9004, {"config_version": 0}, key=MASTER_KEY))
        # No management serv_type is served before the fleet slice: 10004, MAC'd with the
        # master key, session 00000000.
        assert reply.header.err_number == "10004"
        assert (reply.header.serial, reply.header.serv_type) == (5, 9004)
        assert mac_ok(reply, MASTER_KEY) and reply.header.session_id == "00000000"
        assert c.closed_by_server()


def test_management_refuses_a_business_serv_type_and_bad_macs(gw: GatewayThread):
    with management(gw) as c:
        reply = c.ask(build(TERMINAL, 6, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert reply.header.err_number == "10004" and mac_ok(reply, MASTER_KEY)
        assert c.closed_by_server()
    with management(gw) as c:
        reply = c.ask(build(TERMINAL, 7, 9004, {"config_version": 0}, key=bytes(32)))
        assert (reply.header.err_number, reply.mac) == ("10002", bytes(32))
        assert c.closed_by_server()


def test_mac_failures_throttle_the_sending_address(start: Callable[..., GatewayThread], kiosk: str):
    gw = start(gateway_mac_failures_per_minute=2)
    for serial in (1, 2):
        with management(gw) as c:
            reply = c.ask(build(TERMINAL, serial, 9004, {"config_version": 0}, key=bytes(32)))
            assert reply.header.err_number == "10002"
    with management(gw) as c:
        c.send(build(TERMINAL, 3, 9004, {"config_version": 0}, key=MASTER_KEY))
        assert c.frame() is None  # the address is throttled: closed unanswered


# -- the serial record rule (a test-only state-changing handler) ------------------------


def test_state_changing_requests_are_recorded_and_resent_byte_for_byte(
    start: Callable[..., GatewayThread], kiosk: str, engine: Engine
):
    calls: list[dict[str, Any]] = []

    def logout(uow: UnitOfWork, accepted: Accepted) -> Result:
        calls.append(accepted.body)
        if accepted.body["customer_token"] == "cd" * 16:
            raise TspError("20010")  # a business error is recorded too
        return Result({"done": len(calls)})

    gw = start(handlers={1003: logout})
    with business(gw) as c:
        sid, key = sign_on(c)
        raw = build(TERMINAL, 7, 1003, {"customer_token": TOKEN}, key=key, session_id=sid)
        first = c.ask(raw)
        assert (first.header.err_number, body_of(first)) == ("00000", {"done": 1})
        assert mac_ok(first, key)
        again = c.ask(build(TERMINAL, 7, 1003, {"customer_token": TOKEN}, key=key, session_id=sid))
        assert again.body == first.body and mac_ok(again, key)
        assert len(calls) == 1  # answered from the record, not processed again

        other = c.ask(
            build(TERMINAL, 7, 1003, {"customer_token": "ef" * 16}, key=key, session_id=sid)
        )
        assert other.header.err_number == "10003"
        assert body_of(other)["error"]["details"] == {"last_serial": 7}

        failed = c.ask(
            build(TERMINAL, 8, 1003, {"customer_token": "cd" * 16}, key=key, session_id=sid)
        )
        assert failed.header.err_number == "20010"
        resent = c.ask(
            build(TERMINAL, 8, 1003, {"customer_token": "cd" * 16}, key=key, session_id=sid)
        )
        assert (resent.header.err_number, resent.body) == ("20010", failed.body)

        invalid = c.ask(
            build(TERMINAL, 9, 1003, {"customer_token": "short"}, key=key, session_id=sid)
        )
        assert invalid.header.err_number == "10005"  # not recorded: may be sent again
    assert len(calls) == 2
    with engine.connect() as conn:
        found = get_records(conn, [(TERMINAL, 7), (TERMINAL, 8), (TERMINAL, 9)])
    assert sorted(serial for _, serial in found) == [7, 8]


def test_a_resend_racing_its_original_gets_the_originals_answer(
    start: Callable[..., GatewayThread], kiosk: str
):
    gate = threading.Event()
    calls: list[int] = []

    def slow(uow: UnitOfWork, accepted: Accepted) -> Result:
        calls.append(accepted.frame.header.serial)
        gate.wait(10)
        return Result({"done": len(calls)})

    gw = start(handlers={1003: slow})
    body = {"customer_token": TOKEN}
    with business(gw) as first, business(gw) as second:
        sid, key = sign_on(first)
        first.send(build(TERMINAL, 7, 1003, body, key=key, session_id=sid))
        time.sleep(0.3)  # the original is being processed
        # The terminal lost its connection, signs on again and resends the same request.
        sid2, key2 = sign_on(second, serial=8)
        second.send(build(TERMINAL, 7, 1003, body, key=key2, session_id=sid2))
        time.sleep(0.3)
        gate.set()
        reply = second.frame()
        assert reply is not None
        assert (reply.header.err_number, body_of(reply)) == ("00000", {"done": 1})
        assert mac_ok(reply, key2)
    assert calls == [7]


def test_a_resend_waiting_too_long_is_90002(start: Callable[..., GatewayThread], kiosk: str):
    gate = threading.Event()

    def stuck(uow: UnitOfWork, accepted: Accepted) -> Result:
        gate.wait(10)
        return Result({})

    gw = start(handlers={1003: stuck})
    gw.gateway.dispatcher.in_progress_wait_s = 0.5
    body = {"customer_token": TOKEN}
    try:
        with business(gw) as first, business(gw) as second:
            sid, key = sign_on(first)
            first.send(build(TERMINAL, 7, 1003, body, key=key, session_id=sid))
            time.sleep(0.3)
            sid2, key2 = sign_on(second, serial=8)
            reply = second.ask(build(TERMINAL, 7, 1003, body, key=key2, session_id=sid2))
            assert reply.header.err_number == "90002" and mac_ok(reply, key2)
    finally:
        gate.set()


# -- transport -------------------------------------------------------------------------


def test_only_loopback_is_plaintext_by_default():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    assert not is_loopback("192.168.1.20") and not is_loopback("") and not is_loopback("x")


def test_tls_and_mutual_tls(start: Callable[..., GatewayThread], kiosk: str, tmp_path):
    import ssl

    from .tls_support import make_pki

    pki = make_pki(tmp_path)
    gw = start(gateway_tls_cert=pki.server_cert, gateway_tls_key=pki.server_key)
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with Client(gw.bound.business_port, context=client_ctx) as c:  # type: ignore[attr-defined]
        sign_on(c)

    mutual = start(
        gateway_tls_cert=pki.server_cert,
        gateway_tls_key=pki.server_key,
        gateway_tls_client_ca=pki.ca_cert,
    )
    port = mutual.bound.business_port  # type: ignore[attr-defined]
    # Without a client certificate the handshake fails: with TLS 1.3 the client learns it
    # only when it reads (the server closed), with TLS 1.2 already while connecting.
    try:
        with Client(port, context=client_ctx) as c:
            c.send(build(TERMINAL, 1, 1, SIGN_ON_BODY, key=MASTER_KEY))
            assert c.frame() is None
    except (ssl.SSLError, ConnectionError):
        pass
    client_ctx.load_cert_chain(pki.client_cert, pki.client_key)
    with Client(port, context=client_ctx) as c:
        sign_on(c)


def test_plaintext_port_refuses_a_tls_hello_without_crashing(gw: GatewayThread):
    with socket.create_connection(("127.0.0.1", gw.bound.business_port), timeout=5) as s:  # type: ignore[attr-defined]
        s.sendall(b"\x16\x03\x01\x02\x00" + b"\x00" * 600)  # a TLS ClientHello's first bytes
        assert s.recv(10) == b""  # the "length" 0x16030102 is out of range: closed


# -- throttles ---------------------------------------------------------------------------


def test_a_terminal_asking_too_often_gets_20012_but_paying_is_never_throttled(
    start: Callable[..., GatewayThread], kiosk: str
):
    def summary(uow: UnitOfWork, accepted: Accepted) -> Result:
        return Result({"ok": True})

    gw = start(handlers={1010: summary, 2012: summary}, gateway_requests_per_terminal_per_minute=2)
    with business(gw) as c:
        sid, key = sign_on(c)
        answers = [
            c.ask(build(TERMINAL, n, 1010, {"customer_token": TOKEN}, key=key, session_id=sid))
            for n in (2, 3, 4)
        ]
        assert [a.header.err_number for a in answers] == ["00000", "00000", "20012"]
        assert body_of(answers[2])["error"]["details"]["retry_after_s"] >= 1
        for n in range(5, 10):  # TXN_STATUS belongs to paying: never turned away
            status = c.ask(
                build(TERMINAL, n, 2012, {"original_serial": 1}, key=key, session_id=sid)
            )
            assert status.header.err_number == "00000"


def test_too_many_connections_from_one_address_are_closed_unanswered(
    start: Callable[..., GatewayThread], kiosk: str
):
    gw = start(gateway_connections_per_address_per_minute=3)
    for _ in range(3):
        with business(gw) as c:
            sign_on(c)
    with business(gw) as c:
        c.send(build(TERMINAL, 9, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert c.frame() is None  # closed without a word


# -- multi-frame answers (a test-only large answer) ---------------------------------------


def _assemble(
    c: Client, serial: int, serv_type: int, key: bytes
) -> tuple[list[Any], dict[str, Any]]:
    from teleserve.gateway.frame import Echo
    from teleserve.gateway.multiframe import MessageAssembler

    assembler = MessageAssembler(Echo(TERMINAL, serial, serv_type))
    frames = []
    while True:
        frame = c.frame()
        assert frame is not None and mac_ok(frame, key)  # every frame carries its own MAC
        frames.append(frame)
        done = assembler.add(frame, body_of(frame))
        if done is not None:
            assert isinstance(done, dict), done
            return frames, done


def test_a_large_answer_comes_in_frames_and_a_recorded_one_is_resent_in_full(
    start: Callable[..., GatewayThread], kiosk: str
):
    # USAGE_DETAIL's shape: fields, then ~2.5 MiB of items (three frames at least).
    items = [{"start_ms": n, "peer": "138****0000", "duration_s": n % 600, "charge": n % 97}
             for n in range(40_000)]  # fmt: skip

    calls: list[int] = []

    def usage(uow: UnitOfWork, accepted: Accepted) -> Result:
        calls.append(accepted.frame.header.serv_type)
        return Result({"month": "2026-11", "items": items})

    # 1003 stands in for a recorded (state-changing) serv_type with a large answer.
    gw = start(handlers={1012: usage, 1003: usage})
    body = {"customer_token": TOKEN, "month": "2026-11", "kind": "voice"}
    with business(gw) as c:
        sid, key = sign_on(c)
        c.send(build(TERMINAL, 5, 1012, body, key=key, session_id=sid))
        frames, whole = _assemble(c, 5, 1012, key)
        assert len(frames) >= 3
        assert [f.header.last for f in frames] == [False] * (len(frames) - 1) + [True]
        assert {(f.header.serial, f.header.serv_type) for f in frames} == {(5, 1012)}
        assert all(len(f.body) <= 1_048_576 for f in frames)
        assert whole == {"month": "2026-11", "items": items}

        recorded = build(TERMINAL, 6, 1003, {"customer_token": TOKEN}, key=key, session_id=sid)
        c.send(recorded)
        first, first_whole = _assemble(c, 6, 1003, key)
        c.send(build(TERMINAL, 6, 1003, {"customer_token": TOKEN}, key=key, session_id=sid))
        again, again_whole = _assemble(c, 6, 1003, key)
    # The resend: every frame of the recorded answer again, nothing processed twice.
    assert calls == [1012, 1003]
    assert again_whole == first_whole == {"month": "2026-11", "items": items}
    assert [f.body for f in again] == [f.body for f in first]


def test_stopping_with_connections_open_reports_no_error(gw: GatewayThread):
    """Stopping ends each open connection's task normally: on Python 3.11 a cancelled one
    made asyncio log an "Exception in callback" traceback per connection."""
    problems: list[dict[str, Any]] = []
    gw.loop.call_soon_threadsafe(
        gw.loop.set_exception_handler, lambda _loop, context: problems.append(context)
    )
    clients = [business(gw), business(gw), management(gw)]
    deadline = time.monotonic() + 10
    while len(gw.gateway._tasks) < len(clients):  # every connection's handler is running
        assert time.monotonic() < deadline, "the connections were not accepted"
        time.sleep(0.02)
    gw.stop()
    assert problems == []
    for client in clients:
        client.close()
