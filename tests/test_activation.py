"""fowlctl starts fowld through D-Bus activation, and says "not running" only when it cannot.

Each test runs a private dbus-daemon whose configuration names a service directory;
the activation file there starts a real fowld with ``Exec=`` (a bus without systemd).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fowlctl.bus import ACTIVATION_FAILED
from fowlctl.errors import NOT_RUNNING_MESSAGE, ExitCode
from harness.servers import ProcessGroup, dbus_daemon, start_dbus_bus

FOWLCTL = [sys.executable, "-m", "fowlctl"]
RUN_TIMEOUT = 60.0  # seconds: activation starts a whole fowld on a loaded machine


def _activation_file(exec_line: str) -> str:
    return f"[D-BUS Service]\nName=org.fowl.Fowld1\nExec={exec_line}\n"


@pytest.fixture
def bus_with(processes: ProcessGroup) -> Iterator:
    """``bus_with(activation_text or None)`` -> (env for fowlctl, the bus)."""
    if dbus_daemon() is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus)")
    with tempfile.TemporaryDirectory(prefix="fowl-act-") as name:
        directory = Path(name)

        def start(activation: str | None) -> dict:
            services = directory / "services"
            services.mkdir()
            if activation is not None:
                (services / "org.fowl.Fowld1.service").write_text(activation)
            config = directory / "config"
            env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
            env["XDG_CONFIG_HOME"] = str(config)
            bus = start_dbus_bus(processes, directory, services=services, env=env)
            return {**env, "DBUS_SESSION_BUS_ADDRESS": bus.address}

        yield start
        processes.stop_all()  # fowld leaves with its bus


def _fowlctl(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FOWLCTL, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _bus_call(env: dict, method: str, *args: str) -> str:
    result = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply=literal",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            f"org.freedesktop.DBus.{method}",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_list_activates_fowld(bus_with) -> None:
    exec_line = shlex.join([sys.executable, "-m", "fowld", "--relay-only"])
    env = bus_with(_activation_file(exec_line))
    assert "false" in _bus_call(env, "NameHasOwner", "string:org.fowl.Fowld1")

    started = time.monotonic()
    result = _fowlctl(env, "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No sessions.")
    assert "true" in _bus_call(env, "NameHasOwner", "string:org.fowl.Fowld1")
    pid = int(_bus_call(env, "GetConnectionUnixProcessID", "string:org.fowl.Fowld1").split()[-1])
    try:
        # The activated fowld is a real one: it answers the next command at once.
        again = _fowlctl(env, "profiles", "--json")
        assert again.returncode == 0, again.stderr
        print(f"activation and first answer: {time.monotonic() - started:.1f} s")
    finally:
        os.kill(pid, 15)


def test_without_an_activation_file_fowlctl_says_not_running(bus_with) -> None:
    env = bus_with(None)
    for args in (["list"], ["invite", "web"], ["watch"]):
        result = _fowlctl(env, *args)
        assert result.returncode == ExitCode.UNAVAILABLE, args
        assert result.stderr == f"fowlctl: {NOT_RUNNING_MESSAGE}\n"


def test_failed_activation_says_so_and_exits_3(bus_with) -> None:
    env = bus_with(_activation_file("/bin/false"))
    result = _fowlctl(env, "list", "--json")
    assert result.returncode == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"fowlctl: {ACTIVATION_FAILED}: ")
    assert "false" in _bus_call(env, "NameHasOwner", "string:org.fowl.Fowld1")
