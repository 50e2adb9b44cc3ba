"""The command line, as a script calls it (``--json``)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from teleserve.cli import app
from teleserve.core.settings import Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgUnitSpec

runner = CliRunner()


def _json(result) -> dict:
    assert result.stdout.strip(), result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def fresh_sqlite(tmp_path, settings):
    """A migrated SQLite database of its own (SQLite-only commands)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    use_settings(settings.model_copy(update={"database_url": url}))
    result = runner.invoke(app, ["db", "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    assert _json(result)["ok"] is True
    yield tmp_path / "cli.db"
    use_settings(settings)


def _add_org(url: str) -> None:
    from teleserve.core.db import make_engine

    engine = make_engine(url)
    with UnitOfWork(engine) as uow:
        iam.create_org_units_batch(
            uow,
            [
                OrgUnitSpec(code="TS", name_zh="运营商", name_en="Operator", level="operator"),
                OrgUnitSpec(
                    code="GD",
                    name_zh="广东",
                    name_en="Guangdong",
                    level="province",
                    parent_code="TS",
                ),
            ],
        )
        uow.commit()
    engine.dispose()


def test_user_create_and_its_errors(fresh_sqlite, monkeypatch):
    _add_org(f"sqlite:///{fresh_sqlite}")
    monkeypatch.setenv("TELESERVE_NEW_USER_PASSWORD", "a-long-enough-passphrase")
    ok = runner.invoke(
        app,
        [
            "user",
            "create",
            "--username",
            "li.na",
            "--name",
            "李娜",
            "--org",
            "GD",
            "--role",
            "agent",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    body = _json(ok)
    assert body["ok"] and body["username"] == "li.na" and body["roles"] == ["agent"]

    bad_org = runner.invoke(
        app,
        [
            "user",
            "create",
            "--username",
            "x.y",
            "--name",
            "X",
            "--org",
            "NOPE",
            "--role",
            "agent",
            "--json",
        ],
    )
    assert bad_org.exit_code == 1
    assert _json(bad_org)["ok"] is False
    again = runner.invoke(
        app,
        [
            "user",
            "create",
            "--username",
            "li.na",
            "--name",
            "李娜",
            "--org",
            "GD",
            "--role",
            "agent",
            "--json",
        ],
    )
    assert again.exit_code == 1  # the username is taken: refused, nothing changed


def test_backup_and_restore(fresh_sqlite, tmp_path):
    _add_org(f"sqlite:///{fresh_sqlite}")
    backup = tmp_path / "backup.db"
    result = runner.invoke(app, ["db", "backup", str(backup), "--json"])
    assert result.exit_code == 0, result.output
    assert _json(result)["bytes"] > 0
    # refuses to overwrite an existing file
    assert runner.invoke(app, ["db", "backup", str(backup), "--json"]).exit_code == 1

    with sqlite3.connect(fresh_sqlite) as conn:
        conn.execute("DELETE FROM iam_org_unit WHERE code = 'GD'")
    refused = runner.invoke(app, ["db", "restore", str(backup), "--json"])
    assert refused.exit_code == 2  # needs --yes
    restored = runner.invoke(app, ["db", "restore", str(backup), "--yes", "--json"])
    assert restored.exit_code == 0, restored.output
    with sqlite3.connect(fresh_sqlite) as conn:
        codes = {r[0] for r in conn.execute("SELECT code FROM iam_org_unit")}
    assert codes == {"TS", "GD"}


def test_backup_on_postgresql_points_to_pg_dump(settings):
    use_settings(settings.model_copy(update={"database_url": "postgresql+psycopg://x@h/db"}))
    try:
        result = runner.invoke(app, ["db", "backup", "out.db", "--json"])
    finally:
        use_settings(settings)
    assert result.exit_code == 2
    assert "pg_dump" in _json(result)["error"]


def test_serve_refuses_default_secrets_in_production(fresh_sqlite, settings):
    use_settings(
        Settings(database_url=f"sqlite:///{fresh_sqlite}")  # production is the default mode
    )
    try:
        result = runner.invoke(app, ["serve"])
    finally:
        use_settings(settings)
    assert result.exit_code != 0
    assert "TELESERVE_SECRET_KEY" in str(result.exception)


def test_seed_refuses_an_unmigrated_database(tmp_path, settings):
    use_settings(settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'e.db'}"}))
    try:
        result = runner.invoke(app, ["seed", "--customers", "1", "--json"])
    finally:
        use_settings(settings)
    assert result.exit_code == 2


def test_api_client_create_prints_the_secret_once(fresh_sqlite):
    from teleserve.core.db import make_engine

    _add_org(f"sqlite:///{fresh_sqlite}")
    result = runner.invoke(
        app,
        [
            "api-client",
            "create",
            "--name",
            "CRM",
            "--org",
            "GD",
            "--scopes",
            "customers.read,catalog.read",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    body = _json(result)
    assert set(body["scopes"]) == {
        "customers.read",
        "catalog.read",
    }
    engine = make_engine(f"sqlite:///{fresh_sqlite}")
    with UnitOfWork(engine) as uow:
        token = iam.issue_token(uow, body["client_id"], body["client_secret"])
        actor = iam.actor_for_token(uow, token.access_token)
        uow.commit()
    engine.dispose()
    assert actor.org_path == "/TS/GD/" and actor.can("customers.read")
    unknown = runner.invoke(
        app,
        ["api-client", "create", "--name", "X", "--org", "GD", "--scopes", "nope", "--json"],
    )
    assert unknown.exit_code == 1
