"""The demo's kiosk fleet, server side: terminals registered, their keys on disk, and the
fleet file the demo's kiosk processes read.

Every hall of the demo operator gets ``per_hall`` terminals with simulated devices
(``GZ01-K01``, ``GZ01-K02``, ...), registered through ``terminals.service`` like
``teleserve terminal register`` does. The registry shows a master key once; installing
it on the kiosk is the deployment's job, which the demo does for the newcomer: each key
goes to ``<database stem>-kiosks/<terminal id>.key`` beside the demo database, in a folder
only the user can enter (0700), in a file only the user can read (0600). Each kiosk's
journal lives in ``<terminal id>/`` in the same folder.

A demo database is rebuilt from nothing by default, and the folder with it (old keys and
journals belong to terminals that no longer exist). With ``--no-fresh`` the registered
terminals are kept: a key file still on disk is used as it is, and a terminal whose key
file is gone gets a new key (a rotation ending the old one at once).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from teleserve.core.uow import UnitOfWork
from teleserve.demo.customers import FleetPlan, KioskPlan
from teleserve.demo.data import CITIES
from teleserve.demo.people import BLOCK_SIZE
from teleserve.inventory import service as inventory
from teleserve.terminals import service as terminals

FLEET_FILE = "fleet.json"
# Numbers the customers pay for: up to PAYABLE_PER_CITY payable ones from each city's
# first block (the seed hands a block's numbers out in a shuffled order, so any slice of
# it is a sample), and a few pool numbers with no line for the payments that end held.
CANDIDATE_SLICE = 1_000
PAYABLE_PER_CITY = 300
UNKNOWN_PER_CITY = 30


@dataclass(frozen=True, slots=True)
class DemoTerminal:
    terminal_id: str
    site: str  # the hall's org code
    name: str
    address: str


def kiosk_folder(database: Path) -> Path:
    """``teleserve-demo.db`` → ``teleserve-demo-kiosks/`` beside it."""
    return database.with_name(f"{database.stem}-kiosks")


def demo_terminals(per_hall: int) -> list[DemoTerminal]:
    """``per_hall`` terminals in every hall of the demo operator, hall by hall."""
    return [
        DemoTerminal(
            f"{code}-K{n:02d}", code, f"{name_zh}自助终端{n}", f"{name_en}, {city.name_en}"
        )
        for city in CITIES
        for code, name_zh, name_en in city.halls
        for n in range(1, per_hall + 1)
    ]


def reset_folder(folder: Path) -> None:
    """Remove the previous demo's keys and journals (a fresh database has other
    terminals, with other keys and serials)."""
    if folder.exists():
        shutil.rmtree(folder)


def register_demo_kiosks(engine: Engine, folder: Path, per_hall: int) -> list[KioskPlan]:
    """Make sure every demo terminal is registered and its key is in ``folder``."""
    _private_folder(folder)
    wanted = demo_terminals(per_hall)
    new_keys: dict[str, str] = {}
    with UnitOfWork(engine) as uow:
        registered = {t.terminal_id for t in terminals.list_terminals(uow)}
        for terminal in wanted:
            if terminal.terminal_id not in registered:
                created = terminals.register_terminal(
                    uow,
                    {
                        "terminal_id": terminal.terminal_id,
                        "site": terminal.site,
                        "name": terminal.name,
                        "address": terminal.address,
                        "description": "teleserve demo: simulated devices",
                        "device_mode": "sim",
                    },
                )
                new_keys[terminal.terminal_id] = created.master_key
            elif not key_path(folder, terminal.terminal_id).exists():
                rotated = terminals.rotate_master_key(uow, terminal.terminal_id, grace_hours=0)
                new_keys[terminal.terminal_id] = rotated.master_key
        uow.commit()
    # Written once the keys are committed: a failed registration leaves no key behind.
    for terminal_id, key in new_keys.items():
        write_key(key_path(folder, terminal_id), key)
    return [
        KioskPlan(
            terminal_id=t.terminal_id,
            site=t.site,
            key_file=key_path(folder, t.terminal_id).resolve(),
            data_dir=(folder / t.terminal_id).resolve(),
        )
        for t in wanted
    ]


def key_path(folder: Path, terminal_id: str) -> Path:
    return folder / f"{terminal_id}.key"


def write_key(path: Path, master_key_hex: str) -> None:
    """The key as ``teleserve kiosk --key-file`` reads it, readable by the user only
    (from the moment the file exists, not after a chmod)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(master_key_hex + "\n")


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


def customer_numbers(engine: Engine) -> tuple[list[str], list[str]]:
    """(payable, unknown): numbers with a live line, and pool numbers with none, from
    each city's first block, read a slice at a time until there are enough."""
    payable: list[str] = []
    unknown: list[str] = []
    with engine.connect() as conn:
        for city in CITIES:
            block = city.block(0)
            found: list[str] = []
            free: list[str] = []
            for start in range(0, BLOCK_SIZE, CANDIDATE_SLICE):
                candidates = [
                    f"{block}{suffix:04d}" for suffix in range(start, start + CANDIDATE_SLICE)
                ]
                lines = inventory.payable_lines(conn, candidates)
                found += [n for n in candidates if n in lines]
                free += [n for n in candidates if n not in lines]
                if len(found) >= PAYABLE_PER_CITY:
                    break
            payable += found[:PAYABLE_PER_CITY]
            unknown += free[:UNKNOWN_PER_CITY]
    return payable, unknown


def write_fleet_file(
    engine: Engine, folder: Path, kiosks: list[KioskPlan], ui_terminal: str | None
) -> Path:
    """The fleet file ``demo.customers`` reads: the kiosks it hosts, the numbers to pay."""
    payable, unknown = customer_numbers(engine)
    plan = FleetPlan(tuple(kiosks), ui_terminal, tuple(payable), tuple(unknown))
    path = folder / FLEET_FILE
    plan.dump(path)
    return path
