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
from teleserve.kiosk.devices.xfs4iot import (
    DEFAULT_PUBLISHER,
    NoAcquirer,
    SimAcquirer,
    XfsDevices,
    XfsSetupError,
)
from teleserve.kiosk.journal import Journal
from teleserve.kiosk.ui.server import UiServer, bind_ui_socket
from teleserve.kiosk.ui.settings import UiSettings

log = get_logger("teleserve.kiosk")

DEVICE_DRIVERS = ("sim", "xfs4iot")
ACQUIRERS = ("none", "sim")


def build_devices(
    kind: str, xfs_url: str = DEFAULT_PUBLISHER, acquirer: str = "none"
) -> tuple[Devices, str, SimPanel | None]:
    """The device set, the ``device_mode`` it reports and the demo panel (sim only).

    ``xfs4iot`` asks the XFS4IoT service publisher for its services now, so a wrong
    ``--xfs-url`` or a kiosk without its device services stops the start; once running,
    a service that goes away is a device ``offline`` until it is back. ``--acquirer sim``
    authorises cards with the simulated acquirer and reports ``device_mode`` ``sim`` (the
    server refuses it in production); ``none`` leaves card payments disabled.
    """
    if acquirer not in ACQUIRERS:
        raise ConfigError(f"unknown acquirer {acquirer!r}: none or sim")
    if kind == "sim":
        panel = SimPanel()
        return panel.devices, "sim", panel
    if kind == "xfs4iot":
        link = SimAcquirer() if acquirer == "sim" else NoAcquirer()
        try:
            found = asyncio.run(XfsDevices.discover(xfs_url, link))
        except XfsSetupError as exc:
            raise ConfigError(str(exc)) from exc
        log.info("kiosk.xfs4iot_services", services=found.services)
        return found.devices, "sim" if acquirer == "sim" else "hardware", None
    raise ConfigError(f"unknown device driver {kind!r}: sim or xfs4iot")


async def serve_kiosk(
    config: KioskConfig,
    devices: Devices,
    journal_path: Path,
    stop: asyncio.Event,
    *,
    ui: UiServer | None = None,
) -> None:
    """Run the agent until ``stop`` is set. A remote ``restart`` command starts the
    agent over (recovery, sign-on, replay) on the same journal and devices; the touch
    UI (``ui``, started by the caller) outlives it and serves each agent in turn."""
    while not stop.is_set():
        restart = asyncio.Event()
        journal = Journal(journal_path)
        agent = Agent(config, devices, journal, on_restart=restart.set)
        try:
            await agent.start()
            if ui is not None:
                ui.attach(agent)
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(restart.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        finally:
            if ui is not None:
                await ui.detach()  # the customer's session ends while the agent runs
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
    idle_timeout_s: float = 60.0,
    xfs_url: str = DEFAULT_PUBLISHER,
    acquirer: str = "none",
) -> None:
    """Build the configuration and run the agent until SIGINT / SIGTERM. Raises
    ``ConfigError`` for anything it cannot start with (nothing is created then)."""
    if not 1 <= ui_port <= 65535:
        raise ConfigError("--ui-port must be 1-65535")
    ui_settings = UiSettings(idle_timeout_s=idle_timeout_s)
    device_set, mode, panel = build_devices(devices, xfs_url, acquirer)
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
    ui_socket = bind_ui_socket(ui_port)  # last check: a port in use creates nothing
    data_dir.mkdir(parents=True, exist_ok=True)
    log.info("kiosk.starting", terminal_id=terminal_id, server=server, ui_port=ui_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        ui = UiServer(ui_settings, ui_socket, panel=panel)
        await ui.start()
        try:
            await serve_kiosk(config, device_set, data_dir / "journal.db", stop, ui=ui)
        finally:
            await ui.stop()

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
    idle_timeout: Annotated[
        float,
        typer.Option("--idle-timeout", help="Seconds untouched before the screen ends a session."),
    ] = 60.0,
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
    xfs_url: Annotated[
        str, typer.Option("--xfs-url", help="XFS4IoT service publisher (--devices xfs4iot).")
    ] = DEFAULT_PUBLISHER,
    acquirer: Annotated[
        str, typer.Option("--acquirer", help="Card acquirer for xfs4iot: none or sim.")
    ] = "none",
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
            idle_timeout_s=idle_timeout,
            xfs_url=xfs_url,
            acquirer=acquirer,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
