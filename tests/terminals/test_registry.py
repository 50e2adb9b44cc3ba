"""Registering terminals, reading them back, and who may see what."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.settings import Mode, use_settings
from teleserve.terminals import service
from teleserve.terminals.models import DeviceMode, Terminal, TerminalMasterKey, TerminalStatus

from .conftest import ADMIN, GZ, GZ_OPS, GZ_READER, SZ_OPS, audit_actions, events


def _count(engine, model) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)))


def test_register_returns_the_key_once_and_stores_it_encrypted(register, engine, tree):
    created = register("KIOSK-0001", name="天河一号", address="天河路 1 号", description="大厅左侧")
    key = bytes.fromhex(created.master_key)
    assert len(key) == 32
    assert created.key_check_value == service.key_check_value(key)
    out = created.terminal
    assert out.terminal_id == "KIOSK-0001"
    assert (out.name, out.address, out.description) == ("天河一号", "天河路 1 号", "大厅左侧")
    assert out.status is TerminalStatus.in_service
    assert out.device_mode is DeviceMode.xfs4iot
    assert out.site_id == tree["GZTH-K1"].id
    assert out.org_path == tree["GZTH-K1"].path
    assert out.key_check_value == created.key_check_value
    assert out.previous_key_valid_until is None
    assert (out.software_version, out.config_version) == ("", 0)
    with engine.connect() as conn:
        stored = conn.execute(select(TerminalMasterKey.key_enc)).scalar_one()
    assert created.master_key not in stored and created.master_key.upper() not in stored
    # What staff read never carries the key.
    assert created.master_key not in created.terminal.model_dump_json()


def test_registration_is_audited_and_published_without_the_key(register, engine):
    created = register("K1", device_mode="sim")
    [(action, detail)] = audit_actions(engine)
    assert action == "terminals.registered"
    assert detail == {
        "terminal_id": "K1",
        "site": "GZTH-K1",
        "device_mode": "sim",
        "key_check_value": created.key_check_value,
    }
    [(topic, payload)] = events(engine)
    assert topic == "terminals.registered"
    assert payload["terminal_id"] == "K1" and payload["status"] == "in_service"
    assert created.master_key not in str(payload) + str(detail)


def test_name_defaults_to_the_id_and_a_hall_is_a_site(register):
    created = register("HALL-K", site="GZTH")
    assert created.terminal.name == "HALL-K"


@pytest.mark.parametrize(
    "terminal_id",
    ["", "K" * 17, "K 1", " K1", "K1 ", "K1\n", "K.1", "终端1", "K1/2", "K1%"],
)
def test_bad_terminal_ids_are_refused(register, engine, terminal_id):
    with pytest.raises(ValidationError) as caught:
        register(terminal_id)
    assert caught.value.code == "invalid_terminal_id"
    assert _count(engine, Terminal) == 0


def test_a_sixteen_character_id_with_dash_and_underscore_is_fine(register):
    assert register("Ab-_0123456789xY").terminal.terminal_id == "Ab-_0123456789xY"


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "n" * 101), ("name", "   "), ("address", "a" * 201), ("description", "d" * 501)],
)
def test_text_fields_have_bounds(register, engine, field, value):
    with pytest.raises(ValidationError):
        register("K1", **{field: value})
    assert _count(engine, Terminal) == 0


def test_unknown_device_mode_is_refused(register, engine):
    with pytest.raises(ValidationError):
        register("K1", device_mode="hardware")
    assert _count(engine, Terminal) == 0


def test_the_site_must_be_a_site_or_hall_inside_the_actors_subtree(register, engine):
    with pytest.raises(ValidationError):
        register("K1", site="GZ")  # a city
    with pytest.raises(NotFound):
        register("K1", site="SZ01")  # Shenzhen, outside the Guangzhou actor's subtree
    with pytest.raises(NotFound):
        register("K1", site="NOWHERE")
    assert _count(engine, Terminal) == 0
    assert register("K1", site="SZ01", actor=SZ_OPS).terminal.org_path == "/TS/GD/SZ/SZ01/"


def test_ids_are_never_reused_even_after_decommissioning(register, run, engine):
    register("K1")
    with pytest.raises(Conflict) as caught:
        register("K1", site="GZ-K2")
    assert caught.value.code == "terminal_id_taken"
    run(GZ_OPS, service.decommission, "K1", "replaced")
    with pytest.raises(Conflict):
        register("K1")
    assert _count(engine, Terminal) == 1
    assert _count(engine, TerminalMasterKey) == 1


def test_simulated_devices_are_refused_in_production(register, settings, engine):
    use_settings(settings.model_copy(update={"mode": Mode.production}))
    with pytest.raises(ValidationError) as caught:
        register("SIM-1", device_mode="sim")
    assert caught.value.code == "simulated_devices_refused"
    assert _count(engine, Terminal) == 0
    assert register("HW-1", device_mode="xfs4iot").terminal.device_mode is DeviceMode.xfs4iot
    use_settings(settings)
    assert register("SIM-1", device_mode="sim").terminal.device_mode is DeviceMode.sim


def test_writing_needs_terminals_write(register, engine):
    with pytest.raises(PermissionDenied):
        register("K1", actor=GZ_READER)
    assert _count(engine, Terminal) == 0


def test_reads_are_scoped_to_the_actors_subtree(register, run):
    register("GZ-A", site="GZTH-K1")
    register("GZ-B", site="GZ-K2")
    register("SZ-A", site="SZ01", actor=SZ_OPS)
    listed = run(GZ_READER, service.list_terminals)
    assert [t.terminal_id for t in listed] == ["GZ-A", "GZ-B"]
    assert all(t.org_path.startswith(GZ) for t in listed)
    assert [t.terminal_id for t in run(ADMIN, service.list_terminals)] == ["GZ-A", "GZ-B", "SZ-A"]
    assert run(GZ_READER, service.get_terminal, "GZ-B").terminal_id == "GZ-B"
    with pytest.raises(NotFound):
        run(GZ_READER, service.get_terminal, "SZ-A")  # exists, but not for Guangzhou
    with pytest.raises(NotFound):
        run(GZ_OPS, service.disable, "SZ-A")
    with pytest.raises(NotFound):
        run(GZ_READER, service.list_terminals, site="SZ01")


def test_list_filters_by_site_and_status(register, run):
    register("A1", site="GZTH-K1")
    register("A2", site="GZTH-K1")
    register("B1", site="GZ-K2")
    run(GZ_OPS, service.put_out_of_service, "A2", "paper jam")
    site = run(GZ_READER, service.list_terminals, site="GZTH-K1")
    assert [t.terminal_id for t in site] == ["A1", "A2"]
    oos = run(GZ_READER, service.list_terminals, status="out_of_service")
    assert [(t.terminal_id, t.status_reason) for t in oos] == [("A2", "paper jam")]
    both = run(GZ_READER, service.list_terminals, status=["in_service", "out_of_service"])
    assert len(both) == 3
    with pytest.raises(ValidationError):
        run(GZ_READER, service.list_terminals, status="broken")


def test_reading_needs_terminals_read(register, run):
    register("K1")
    nobody = GZ_READER.__class__(GZ_READER.kind, "x", GZ, frozenset({"iam.orgs.read"}))
    with pytest.raises(PermissionDenied):
        run(nobody, service.list_terminals)
    with pytest.raises(PermissionDenied):
        run(nobody, service.get_terminal, "K1")


def test_an_unknown_device_mode_is_named_in_the_error(register):
    with pytest.raises(ValidationError) as caught:
        register("K1", device_mode="floppy")
    assert "floppy" in caught.value.render("en") and "floppy" in caught.value.render("zh-CN")
