"""Two fowld D-Bus daemons, each on a private bus of its own, with the profiles the benchmark uses.

Side A invites: its profile ``share`` offers the service ``echo``, which ends
at bench/target.py. Side B accepts: its profile ``join`` wants ``echo`` and
listens for it on a free loopback port. Like two users on two computers, each
side has its own dbus-daemon, configuration directory and fowld process; they
meet through the benchmark's mailbox server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import servers
from twisted.internet.task import deferLater

from fowlctl.bus import Fowld
from fowlctl.errors import CtlError

SHARE_PROFILE = "share"
JOIN_PROFILE = "join"
SERVICE = "echo"
READY_TIMEOUT = 15.0  # seconds for a fresh fowld to own its bus name
_RETRY = 0.1  # seconds between two looks for the bus name


class SetupError(RuntimeError):
    """A daemon did not start; the message carries the end of its log."""


def share_profile(mailbox_url: str, relay_hint: str, target_port: int) -> str:
    return (
        "description: offer the benchmark's echo server\n"
        f"mailbox: {mailbox_url}\n"
        f"transit-relay: {relay_hint}\n"
        "services:\n"
        f"  - name: {SERVICE}\n"
        f"    connect: tcp:127.0.0.1:{target_port}\n"
    )


def join_profile(mailbox_url: str, relay_hint: str) -> str:
    return (
        "description: reach the peer's echo server on a free local port\n"
        f"mailbox: {mailbox_url}\n"
        f"transit-relay: {relay_hint}\n"
        "clients:\n"
        f"  - name: {SERVICE}\n"
        "    listen: tcp:0:interface=127.0.0.1\n"
    )


@dataclass
class Side:
    key: str  # "A" or "B"
    bus: servers.DBusBus
    config: Path  # XDG_CONFIG_HOME; profiles in fowl/profiles/
    process: subprocess.Popen | None = None
    fowld: Fowld | None = None  # our D-Bus connection to it while it runs

    @property
    def pid(self) -> int:
        assert self.process is not None, f"fowld {self.key} is not running"
        return self.process.pid


def make_side(
    group: servers.ProcessGroup, key: str, bus_dir: Path, config: Path, profile: str, text: str
) -> Side:
    """Start the side's bus and write its profile (fowld itself starts later)."""
    bus_dir.mkdir(parents=True, exist_ok=True)
    bus = servers.start_dbus_bus(group, bus_dir)
    profiles = config / "fowl" / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    path = profiles / f"{profile}.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return Side(key, bus, config)


def _environment(side: Side) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(side.config),
        "XDG_CONFIG_HOME": str(side.config),
        "DBUS_SESSION_BUS_ADDRESS": side.bus.address,
        # offer the peer only loopback for direct Dilation connections
        "FOWL_DIRECT_ADDRESSES": "127.0.0.1",
    }


async def start_fowld(
    reactor, group: servers.ProcessGroup, side: Side, options: tuple[str, ...] = ()
) -> None:
    """Spawn the side's fowld (with command-line ``options``); connect once it owns its bus name."""
    argv = [sys.executable, "-m", "fowld", *options]
    side.process = group.spawn(argv, env=_environment(side), name=f"fowld-{side.key}")
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if side.process.poll() is not None:
            raise SetupError(
                f"fowld {side.key} exited with code {side.process.returncode}\n{group.describe(side.process)}"
            )
        try:
            side.fowld = await Fowld.connect(reactor, side.bus.address)
            return
        except CtlError as e:
            if time.monotonic() > deadline:
                raise SetupError(
                    f"fowld {side.key} is not on its bus after {READY_TIMEOUT:g} s: {e}"
                ) from None
        await deferLater(reactor, _RETRY)


def stop_fowld(group: servers.ProcessGroup, side: Side) -> None:
    """Disconnect from the side's fowld and end it by its PID (SIGTERM, then SIGKILL)."""
    if side.fowld is not None:
        side.fowld.disconnect()
        side.fowld = None
    if side.process is not None:
        group.stop(side.process)
        side.process = None


def out_of_files(group: servers.ProcessGroup, side: Side) -> str | None:
    """What happened, if the side's fowld ran out of file descriptors (EMFILE in its log)."""
    if side.process is None:
        return None
    _, err = group.output(side.process)
    line = next((line.strip() for line in err.splitlines() if "[Errno 24]" in line), None)
    if line is None:
        return None
    try:
        fds = len(os.listdir(f"/proc/{side.pid}/fd"))
        limits = Path(f"/proc/{side.pid}/limits").read_text().splitlines()
        soft = next(row.split()[3] for row in limits if row.startswith("Max open files"))
    except (OSError, StopIteration, IndexError):
        fds, soft = "?", "?"
    return f"fowld {side.key} ran out of file descriptors ({fds} open, soft limit {soft}): {line}"
