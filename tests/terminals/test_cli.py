"""``teleserve terminal ...`` as a script calls it, on a migrated database (both backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from teleserve.cli import app
from teleserve.core import migrate
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgUnitSpec

runner = CliRunner()


@pytest.fixture
def cli_settings(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings pointing at a database built by the migrations (the CLI checks the
    revision), with a small org tree."""
    url = settings.database_url
    if url.startswith("postgresql"):
        request.getfixturevalue("_pg_engine")  # the per-worker database exists
        admin = make_engine(url)
        with admin.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS cli_terminals CASCADE"))
            conn.execute(text("CREATE SCHEMA cli_terminals"))
        admin.dispose()
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}options=-csearch_path%3Dcli_terminals"
    else:
        url = url.replace("test.db", "cli-terminals.db")
    migrate.upgrade(url)
    engine = make_engine(url)
    with UnitOfWork(engine) as uow:
        iam.create_org_units_batch(
            uow,
            [
                OrgUnitSpec(code="TS", name_zh="运营商", name_en="Operator", level="operator"),
                OrgUnitSpec(
                    code="GD", name_zh="广东", name_en="GD", level="province", parent_code="TS"
                ),
                OrgUnitSpec(
                    code="GZ", name_zh="广州", name_en="GZ", level="city", parent_code="GD"
                ),
                OrgUnitSpec(
                    code="GZTH",
                    name_zh="天河营业厅",
                    name_en="Tianhe",
                    level="hall",
                    parent_code="GZ",
                ),
                OrgUnitSpec(
                    code="GZ-K2",
                    name_zh="火车站",
                    name_en="Station",
                    level="site",
                    parent_code="GZ",
                ),
            ],
        )
        uow.commit()
    engine.dispose()
    mine = settings.model_copy(update={"database_url": url})
    use_settings(mine)
    yield mine
    use_settings(settings)


def invoke(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["terminal", *args, "--json"])
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_register_prints_the_key_once_and_refuses_a_second_registration(cli_settings):
    code, body = invoke(
        "register",
        "--id",
        "KIOSK-0001",
        "--site",
        "GZTH",
        "--name",
        "天河一号",
        "--address",
        "天河路",
    )
    assert code == 0 and body["ok"] is True
    assert len(bytes.fromhex(body["master_key"])) == 32
    assert len(body["key_check_value"]) == 6
    terminal = body["terminal"]
    assert (terminal["terminal_id"], terminal["name"], terminal["status"]) == (
        "KIOSK-0001",
        "天河一号",
        "in_service",
    )
    assert terminal["device_mode"] == "xfs4iot"
    code, body = invoke("register", "--id", "KIOSK-0001", "--site", "GZ-K2")
    assert code == 1 and body["ok"] is False
    assert "KIOSK-0001" in body["error"] and "已登记" in body["error"]  # the operator's language
    code, body = invoke("list")
    assert [t["terminal_id"] for t in body["terminals"]] == ["KIOSK-0001"]
    assert "master_key" not in json.dumps(body)


def test_register_refuses_bad_input_and_simulated_devices_in_production(cli_settings):
    code, body = invoke("register", "--id", "BAD ID", "--site", "GZTH")
    assert code == 1 and not body["ok"]
    code, body = invoke("register", "--id", "K1", "--site", "GZ")  # a city
    assert code == 1 and not body["ok"]
    code, body = invoke("register", "--id", "K1", "--site", "GZTH", "--device-mode", "floppy")
    assert code == 1 and not body["ok"]
    use_settings(cli_settings.model_copy(update={"mode": Mode.production}))
    code, body = invoke("register", "--id", "SIM-1", "--site", "GZTH", "--device-mode", "sim")
    assert code == 1 and "模拟设备" in body["error"]
    use_settings(cli_settings)
    code, body = invoke("list")
    assert body == {"ok": True, "terminals": []}
    code, body = invoke("register", "--id", "SIM-1", "--site", "GZTH", "--device-mode", "sim")
    assert code == 0 and body["terminal"]["device_mode"] == "sim"


def test_rotate_key_and_status_commands(cli_settings):
    _code, registered = invoke("register", "--id", "K1", "--site", "GZ-K2")
    code, rotated = invoke("rotate-key", "--id", "K1")
    assert code == 0 and rotated["ok"] and rotated["terminal_id"] == "K1"
    assert rotated["master_key"] != registered["master_key"]
    assert rotated["previous_key_valid_until"] is not None
    code, at_once = invoke("rotate-key", "--id", "K1", "--grace-hours", "0")
    assert code == 0 and at_once["previous_key_valid_until"] is None
    code, body = invoke("rotate-key", "--id", "NOPE")
    assert code == 1 and not body["ok"]

    steps = [
        ("out-of-service", "out_of_service"),
        ("disable", "disabled"),
        ("enable", "in_service"),
        ("decommission", "decommissioned"),
    ]
    for verb, status in steps:
        code, body = invoke(verb, "--id", "K1", "--reason", f"step {verb}")
        assert code == 0, body
        assert (body["terminal"]["status"], body["terminal"]["status_reason"]) == (
            status,
            f"step {verb}",
        )
    code, body = invoke("enable", "--id", "K1")
    assert code == 1 and not body["ok"]  # decommissioned for good
    code, body = invoke("rotate-key", "--id", "K1")
    assert code == 1 and not body["ok"]


def test_list_filters(cli_settings):
    invoke("register", "--id", "A1", "--site", "GZTH")
    invoke("register", "--id", "B1", "--site", "GZ-K2")
    invoke("out-of-service", "--id", "B1")
    _code, body = invoke("list", "--site", "GZ-K2")
    assert [t["terminal_id"] for t in body["terminals"]] == ["B1"]
    _code, body = invoke("list", "--status", "in_service")
    assert [t["terminal_id"] for t in body["terminals"]] == ["A1"]
    code, body = invoke("list", "--site", "NOWHERE")
    assert code == 1 and not body["ok"]
    human = runner.invoke(app, ["terminal", "list"])
    assert human.exit_code == 0, human.output
