"""``teleserve kiosk``: run the kiosk agent.

The lead mounts ``kiosk`` (a plain typer command function) on the main CLI:
``app.command("kiosk")(teleserve.kiosk.cli.kiosk)``. ``run_kiosk`` is the same thing
for code (the demo starts simulated kiosks through it); ``serve_kiosk`` is its async core.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer

from teleserve.core.logging import get_logger
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.config import (
    ConfigError,
    KioskConfig,
    parse_server,
    read_key_file,
    tls_context,
)
from teleserve.kiosk.devices.base import Devices
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.journal import Journal

log = get_logger("teleserve.kiosk")

DEVICE_DRIVERS = ("sim", "xfs4iot")


def build_devices(kind: str) -> tuple[Devices, str]:
    """The device set and the ``device_mode`` it reports."""
    if kind == "sim":
        return SimPanel().devices, "sim"
    if kind == "xfs4iot":
        raise ConfigError(
            "the XFS4IoT device drivers are not available yet (they come with the next "
            "release of the kiosk agent); use --devices sim in demo mode"
        )
    raise ConfigError(f"unknown device driver {kind!r}: sim or xfs4iot")


async def serve_kiosk(
    config: KioskConfig, devices: Devices, journal_path: Path, stop: asyncio.Event
) -> None:
    """Run the agent until ``stop`` is set. A remote ``restart`` command starts the
    agent over (recovery, sign-on, replay) on the same journal and devices."""
    while not stop.is_set():
        restart = asyncio.Event()
        journal = Journal(journal_path)
        agent = Agent(config, devices, journal, on_restart=restart.set)
        try:
            await agent.start()
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(restart.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        finally:
            await agent.stop()
            journal.close()
        if restart.is_set() and not stop.is_set():
            log.info("kiosk.restarting")


def run_kiosk(
    terminal_id: str,
    key_file: Path,
    server: str,
    ui_port: int,
    devices: str,
    data_dir: Path,
    *,
    management_port: int | None = None,
    ca_file: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    plaintext: bool = False,
    software_version: str = "1.0.0",
) -> None:
    """Build the configuration and run the agent until SIGINT / SIGTERM. Raises
    ``ConfigError`` for anything it cannot start with (nothing is created then)."""
    if not 1 <= ui_port <= 65535:
        raise ConfigError("--ui-port must be 1-65535")
    device_set, mode = build_devices(devices)
    endpoint = parse_server(server, management_port)
    if plaintext and (ca_file or client_cert):
        raise ConfigError("--plaintext excludes --ca-file and --client-cert")
    # PROTOCOL.md: TLS outside loopback. The server refuses plaintext from elsewhere
    # unless an operator opened a lab, which --plaintext is for.
    use_tls = not plaintext and (not endpoint.loopback or ca_file or client_cert)
    tls = (
        tls_context(ca_file=ca_file, cert_file=client_cert, key_file=client_key)
        if use_tls
        else None
    )
    config = KioskConfig(
        terminal_id=terminal_id,
        master_key=read_key_file(key_file),
        endpoint=endpoint,
        tls=tls,
        device_mode=mode,
        software_version=software_version,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    # The touch UI (served on 127.0.0.1:ui_port) arrives with the next slice; the
    # port is taken now so scripts need not change then.
    log.info("kiosk.starting", terminal_id=terminal_id, server=server, ui_port=ui_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve_kiosk(config, device_set, data_dir / "journal.db", stop)

    asyncio.run(main())


def kiosk(
    terminal_id: Annotated[str, typer.Option("--terminal-id", help="This terminal's id.")],
    key_file: Annotated[
        Path, typer.Option("--key-file", help="File holding the 64-hex-digit master key.")
    ],
    server: Annotated[
        str,
        typer.Option(
            "--server", help="HOST[:PORT] of the business channel (management: PORT + 1)."
        ),
    ] = "127.0.0.1",
    ui_port: Annotated[int, typer.Option("--ui-port", help="Touch UI port (loopback).")] = 8800,
    devices: Annotated[str, typer.Option("--devices", help="sim or xfs4iot.")] = "sim",
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the journal lives.")] = Path(
        "kiosk-data"
    ),
    management_port: Annotated[
        int | None, typer.Option("--management-port", help="Management channel port.")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="CA that signed the server's certificate.")
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option("--client-cert", help="Client certificate (mutual TLS).")
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option("--client-key", help="Key of the client certificate.")
    ] = None,
    plaintext: Annotated[
        bool, typer.Option("--plaintext", help="No TLS even off loopback (labs only).")
    ] = False,
) -> None:
    """Run the kiosk agent: TSP/1 client, devices, durable journal, recovery."""
    try:
        run_kiosk(
            terminal_id,
            key_file,
            server,
            ui_port,
            devices,
            data_dir,
            management_port=management_port,
            ca_file=ca_file,
            client_cert=client_cert,
            client_key=client_key,
            plaintext=plaintext,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
