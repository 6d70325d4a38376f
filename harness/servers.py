"""Real servers and processes for tests, on loopback, always stopped by PID.

Fixtures in conftest.py use these; tests that need something unusual (a
mailbox restarted on the same port, fowld itself) call them directly.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.wait import until

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 15.0  # seconds; a loaded CI machine starts twist in ~1 s
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
_TAIL = 2000  # characters of a log shown when a server fails to start


class ServerError(RuntimeError):
    """A server process did not come up; the message carries its output."""


def venv_script(name: str) -> Path:
    """A console script installed beside the running interpreter."""
    return Path(sys.executable).parent / name


def upstream_python_path() -> Path:
    """The interpreter with upstream fowl installed: $FOWL_UPSTREAM_PYTHON or the repo's venv."""
    configured = os.environ.get("FOWL_UPSTREAM_PYTHON")
    # Not resolved: following a venv's python symlink would leave the venv.
    return Path(configured) if configured else REPO_ROOT / ".venv-upstream/bin/python"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Return once ``host:port`` accepts a TCP connection; raise if ``timeout`` passes first.

    With ``process`` given, stop waiting as soon as it exits (WaitTimeout, a TimeoutError).
    """
    until(lambda: accepts(host, port), f"connections accepted on {host}:{port}", timeout, process=process)


def accepts(host: str, port: int) -> bool:
    """Whether ``host:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_line(stream: IO, timeout: float) -> bytes:
    """Read one line (with its newline) from a subprocess pipe, waiting at most ``timeout``.

    Reads the file descriptor byte by byte, so it never strands data in a
    Python buffer; do not mix it with the stream's own read methods.
    """
    fd = stream.fileno()
    line = bytearray()
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete line within {timeout}s (got {bytes(line)!r})")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError(f"stream closed before the end of a line (got {bytes(line)!r})")
        line += byte
    return bytes(line)


class ProcessGroup:
    """Processes started for tests, each with its output in files, all stopped at teardown."""

    def __init__(self, log_dir: Path):
        self._log_dir = log_dir
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._processes: list[subprocess.Popen] = []
        self._logs: dict[int, tuple[Path, Path]] = {}

    def spawn(
        self,
        argv: Sequence[str | os.PathLike],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | IO | None = subprocess.DEVNULL,
        stdout: int | IO | None = None,
        stderr: int | IO | None = None,
        cwd: str | os.PathLike | None = None,
        name: str | None = None,
    ) -> subprocess.Popen:
        """Start ``argv``; stdout and stderr go to log files unless given.

        ``env`` replaces the environment, as with ``subprocess.Popen``.
        """
        label = f"{len(self._processes):02d}-{name or Path(argv[0]).name}"
        out_path = self._log_dir / f"{label}.stdout"
        err_path = self._log_dir / f"{label}.stderr"
        with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
            process = subprocess.Popen(
                [str(arg) for arg in argv],
                env=None if env is None else dict(env),
                cwd=cwd,
                stdin=stdin,
                stdout=out_file if stdout is None else stdout,
                stderr=err_file if stderr is None else stderr,
            )
        self._processes.append(process)
        self._logs[process.pid] = (out_path, err_path)
        return process

    def output(self, process: subprocess.Popen) -> tuple[str, str]:
        """What ``process`` wrote so far to its stdout and stderr log files."""
        out_path, err_path = self._logs[process.pid]
        return (
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
        )

    def describe(self, process: subprocess.Popen) -> str:
        """The end of a process's logs, for failure messages."""
        out, err = self.output(process)
        return f"stdout:\n{out[-_TAIL:]}\nstderr:\n{err[-_TAIL:]}"

    def stop(self, process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
        """Terminate ``process`` (SIGKILL if it lingers past ``timeout``); return its exit code."""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        return process.returncode

    def stop_all(self) -> None:
        """Stop every process, newest first, so clients go before their servers."""
        for process in reversed(self._processes):
            self.stop(process)


@dataclass(frozen=True)
class RunningServer:
    process: subprocess.Popen
    group: ProcessGroup

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        return self.group.stop(self.process)


@dataclass(frozen=True)
class MailboxServer(RunningServer):
    port: int
    url: str  # ws://127.0.0.1:PORT/v1


@dataclass(frozen=True)
class TransitRelay(RunningServer):
    port: int
    hint: str  # tcp:127.0.0.1:PORT


@dataclass(frozen=True)
class DBusBus(RunningServer):
    address: str  # as printed by dbus-daemon, guid included


def _start_listening(
    group: ProcessGroup, argv: list, port: int, what: str, timeout: float
) -> subprocess.Popen:
    process = group.spawn(argv, name=what)
    try:
        wait_for_port(LOOPBACK, port, timeout, process)
    except TimeoutError as e:
        group.stop(process)
        raise ServerError(f"{what} did not start: {e}\n{group.describe(process)}") from None
    return process


def mailbox_argv(host: str, port: int) -> list[str]:
    """``twist wormhole-mailbox`` on ``host:port``, keeping its database in memory."""
    return [
        str(venv_script("twist")),
        "wormhole-mailbox",
        f"--port=tcp:{port}:interface={host}",
        "--channel-db=:memory:",
    ]


def relay_argv(host: str, port: int) -> list[str]:
    """``twist transitrelay`` on ``host:port``."""
    return [str(venv_script("twist")), "transitrelay", f"--port=tcp:{port}:interface={host}"]


def start_mailbox(
    group: ProcessGroup, port: int | None = None, timeout: float = START_TIMEOUT
) -> MailboxServer:
    """Run ``twist wormhole-mailbox`` in memory on loopback (``port`` to reuse one)."""
    port = port or free_port()
    process = _start_listening(group, mailbox_argv(LOOPBACK, port), port, "mailbox", timeout)
    return MailboxServer(process, group, port, f"ws://{LOOPBACK}:{port}/v1")


def start_transit_relay(group: ProcessGroup, timeout: float = START_TIMEOUT) -> TransitRelay:
    """Run ``twist transitrelay`` on a free loopback port."""
    port = free_port()
    process = _start_listening(group, relay_argv(LOOPBACK, port), port, "transit-relay", timeout)
    return TransitRelay(process, group, port, f"tcp:{LOOPBACK}:{port}")


def dbus_daemon() -> str | None:
    return shutil.which("dbus-daemon")


def start_dbus_bus(
    group: ProcessGroup,
    directory: Path,
    timeout: float = START_TIMEOUT,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> DBusBus:
    """Run a private session bus whose socket lives in ``directory``.

    Keep ``directory`` short: a UNIX socket path is limited to about 100 bytes.
    ``wrap`` rewrites the argv (to run the bus in a network namespace).
    """
    argv = [
        dbus_daemon() or "dbus-daemon",
        "--session",
        "--nofork",
        "--print-address=1",
        f"--address=unix:path={directory / 'bus'}",
    ]
    process = group.spawn(wrap(argv) if wrap else argv, stdout=subprocess.PIPE, name="dbus-daemon")
    try:
        address = read_line(process.stdout, timeout).decode().strip()
    except (TimeoutError, EOFError) as e:
        group.stop(process)
        raise ServerError(f"dbus-daemon did not start: {e}\n{group.describe(process)}") from None
    return DBusBus(process, group, address)
