"""What the commands of ``teleserve`` share (the main CLI and the fleet's commands):
output as JSON or for people, failing with an exit code, the schema check, and one
service call as the system in a committed unit of work."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from teleserve.core.settings import Settings, get_settings

console = Console(stderr=True)
T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def out(data: dict[str, Any], as_json: bool, human: Any = None) -> None:
    """``data`` as one JSON line on stdout, or ``human`` (default: ``data``) for people."""
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    else:
        console.print(human if human is not None else data)


def fail(message: str, as_json: bool, code: int = 1) -> NoReturn:
    """Say what went wrong (as JSON with ``--json``) and exit with ``code``."""
    if as_json:
        sys.stdout.write(json.dumps({"ok": False, "error": message}, ensure_ascii=False) + "\n")
    else:
        console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def engine_for(settings: Settings) -> Any:
    from teleserve.core.db import make_engine

    return make_engine(settings.database_url)


def require_schema(settings: Settings, engine: Any, as_json: bool = False) -> None:
    """Exit 2 unless the database is at this release's newest migration."""
    from teleserve.core import migrate

    current, head = migrate.current_revision(engine), migrate.head_revision(settings.database_url)
    if current != head:
        fail(
            f"the database schema is at {current or 'nothing'}, this release needs {head}: "
            "run 'teleserve db upgrade' first",
            as_json,
            code=2,
        )


def in_unit_of_work(action: Callable[[Any], T], as_json: bool) -> T:
    """Run a service call as the system in one committed unit of work; a domain error is
    printed in the operator's language and exits 1 with nothing changed."""
    from teleserve.core.errors import DomainError
    from teleserve.core.uow import UnitOfWork

    settings = get_settings()
    engine = engine_for(settings)
    try:
        require_schema(settings, engine, as_json)
        with UnitOfWork(engine) as uow:
            result = action(uow)
            uow.commit()
            return result
    except DomainError as exc:
        fail(exc.render(settings.default_locale), as_json)
    finally:
        engine.dispose()
