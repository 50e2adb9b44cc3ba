"""``teleserve terminal`` fleet commands (``terminals.cli_fleet.app``) as a script calls
them, on a migrated database (both backends)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from teleserve.cli import app as main_app
from teleserve.core.clock import business_date, utcnow
from teleserve.core.db import make_engine
from teleserve.core.settings import Settings
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import alarms
from teleserve.terminals.cli_fleet import app

from .test_cli import cli_settings  # noqa: F401 (fixture)

runner = CliRunner()


def invoke(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.stdout.strip(), result.output
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_fleet_commands(cli_settings: Settings, tmp_path: Path):  # noqa: F811
    result = runner.invoke(main_app, ["terminal", "register", "--id", "K1", "--site", "GZTH"])
    assert result.exit_code == 0, result.output
    engine = make_engine(cli_settings.database_url)
    with UnitOfWork(engine) as uow:
        raised = alarms.raise_alarm(
            uow.connection, "K1", "PRN_JAM", "major", "printer", "jam", utcnow()
        )
        uow.commit()
    engine.dispose()

    code, body = invoke("alarms")
    assert code == 0 and [a["alarm_id"] for a in body["alarms"]] == [raised.alarm_id]
    code, body = invoke("alarm-ack", "--alarm", raised.alarm_id, "--note", "on it")
    assert code == 0 and body["alarm"]["status"] == "acknowledged"
    code, body = invoke("alarm-ack", "--alarm", raised.alarm_id)
    assert code == 1 and not body["ok"]  # already acknowledged, in the operator's language
    code, body = invoke("alarm-clear", "--alarm", raised.alarm_id)
    assert code == 0 and body["alarm"]["status"] == "cleared"
    assert invoke("alarms")[1]["alarms"] == []
    assert len(invoke("alarms", "--status", "cleared")[1]["alarms"]) == 1

    code, body = invoke("command", "--id", "K1", "--type", "restart")
    assert code == 0 and body["command"]["status"] == "pending"
    command_id = body["command"]["command_id"]
    assert [c["command_id"] for c in invoke("commands", "--active")[1]["commands"]] == [command_id]
    code, body = invoke("command", "--id", "K1", "--type", "explode")
    assert code == 1 and not body["ok"]
    code, body = invoke("command-cancel", "--command", command_id, "--reason", "typo")
    assert code == 0 and body["command"]["status"] == "cancelled"

    config = tmp_path / "kiosk.json"
    config.write_text(json.dumps({"idle_s": 90, "banner": "欢迎"}), encoding="utf-8")
    code, body = invoke(
        "config-publish", "--scope", "site", "--target", "GZTH", "--file", str(config)
    )
    assert code == 0 and body["config"]["version"] == 1
    assert invoke("configs")[1]["configs"][0]["config"] == {"idle_s": 90, "banner": "欢迎"}
    config.write_text("[1, 2]", encoding="utf-8")
    code, body = invoke("config-publish", "--scope", "all", "--file", str(config))
    assert code == 1 and not body["ok"]

    assert invoke("collections") == (0, {"ok": True, "collections": []})
    assert invoke("exceptions", "--status", "all") == (0, {"ok": True, "exceptions": []})
    code, body = invoke("exception-resolve", "--exception", "nope", "--note", "x")
    assert code == 1 and not body["ok"]
    code, body = invoke("availability", "--day", business_date().isoformat(), "--id", "K1")
    assert code == 0 and [(a["terminal_id"], a["available_s"]) for a in body["availability"]] == [
        ("K1", 0)
    ]
    code, body = invoke("availability", "--day", "2026-13-01")
    assert code == 1 and not body["ok"]
    code, body = invoke("reconciliations", "--day", date(2026, 1, 1).isoformat())
    assert (code, body) == (0, {"ok": True, "reconciliations": []})
