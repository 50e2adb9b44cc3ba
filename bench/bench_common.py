"""What several benchmarks share."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url


@contextmanager
def pg_database(pg_url: str, name: str) -> Iterator[tuple[str, str]]:
    """A scratch database beside ``pg_url``: (SQLAlchemy url, psycopg conninfo)."""
    url = make_url(pg_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        scratch = url.set(database=name)
        yield (
            scratch.render_as_string(hide_password=False),
            scratch.set(drivername="postgresql").render_as_string(hide_password=False),
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
Run = Callable[[argparse.Namespace, str, Path, tuple[str, str] | None], None]


def database_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser (``doc`` as its help) with ``--db``, ``--customers`` (the demo
    operator's size) and ``--pg-url``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    return parser


def run_on_database(args: argparse.Namespace, name: str, run: Run) -> None:
    """``run(args, url, folder, pg)`` on a fresh SQLite file in a new temporary folder, or
    on a scratch PostgreSQL database called ``name`` (``pg``: its urls; ``None`` on
    SQLite), dropped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"{name.replace('_', '-')}-"))
    if args.db == "sqlite":
        run(args, f"sqlite:///{folder / 'teleserve.db'}", folder, None)
        return
    with pg_database(args.pg_url, f"teleserve_{name}") as pg:
        run(args, pg[0], folder, pg)
