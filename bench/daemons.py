"""Pairs of stdio daemons, ours or upstream fowl's, joined by one forward.

Both speak the same JSON lines. The *service* daemon offers ``bench`` (it
connects to bench/target.py); the *client* daemon listens for it on loopback.
A reader thread per daemon drains stdout all the time: upstream prints a line
per chunk, and a full pipe would stall it mid-transfer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from helpers import servers
from traffic import Address, first_echo

SERVICE = "bench"
STEP_TIMEOUT = 20.0  # seconds for one setup step (a code, a peer, a listener) on loopback
_FAILURES = {"error", "listening-failed", "remote-connect-failed"}

# Upstream hard-codes the public transit relay; the benchmark replaces it
# (with a loopback relay, or none) so nothing leaves this machine.
UPSTREAM_LAUNCHER = """\
import sys
import wormhole.cli.public_relay as public_relay
public_relay.TRANSIT_RELAY = sys.argv.pop(1) or None
from fowl.cli import fowld
sys.exit(fowld())
"""


class DaemonError(RuntimeError):
    """A daemon failed, exited, or did not answer in time."""


@dataclass(frozen=True)
class Implementation:
    key: str
    label: str
    command: Callable[[str, str | None], list[str]]  # (mailbox URL, relay hint or None) -> argv
    has_status: bool = False  # the client side understands {"kind": "status"}
    client_command: Callable[[str, str | None], list[str]] | None = None  # a mixed pair; None: ``command``


def ours(source: Path | None = None) -> Implementation:
    """Our daemon; from the ``fowld`` package under ``source`` (e.g. an earlier commit) if given."""

    def command(mailbox_url: str, relay: str | None) -> list[str]:
        # the interpreter running the benchmark has fowld installed (what `fowld` runs)
        daemon = [sys.executable, "-m", "fowld", "--stdio", "--mailbox", mailbox_url]
        daemon += ["--transit-relay", relay or "none"]
        if source is None:
            return daemon
        # -P: `-m` would put the working directory, perhaps another checkout, before ``source``
        return ["env", f"PYTHONPATH={source}", daemon[0], "-P", *daemon[1:]]

    if source is None:
        return Implementation("ours", "ours (fowld --stdio)", command, has_status=True)
    return Implementation("base", f"ours from {source}", command, has_status=True)


def upstream(python: Path) -> Implementation:
    def command(mailbox_url: str, relay: str | None) -> list[str]:
        return [str(python), "-c", UPSTREAM_LAUNCHER, relay or "", "--mailbox", mailbox_url]

    return Implementation("upstream", "upstream fowl 26.8 (fowld)", command)


def mixed(service: Implementation, client: Implementation) -> Implementation:
    """A pair of two implementations: ``service`` offers the service, ``client`` listens for it."""
    return Implementation(
        f"{service.key}-{client.key}",  # names log files: no slash
        f"{service.key} service / {client.key} client",
        service.command,
        has_status=client.has_status,
        client_command=client.command,
    )


class Daemon:
    """One stdio daemon process; every output line is kept with its arrival time."""

    def __init__(self, group: servers.ProcessGroup, argv: list[str], label: str):
        self.label = label
        self._group = group
        self._lines: list[tuple[float, dict]] = []
        self._eof = False
        self._changed = threading.Condition()
        self.process = group.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, name=label)
        self._reader = threading.Thread(target=self._read, name=f"{label}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        try:
            for raw in self.process.stdout:
                arrived = time.perf_counter()
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                if not isinstance(line, dict):
                    line = {"kind": "(not JSON)", "text": raw.decode("utf-8", "replace").rstrip()}
                with self._changed:
                    self._lines.append((arrived, line))
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass  # the pipe was closed under us while stopping
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time used so far (Linux /proc), or None where unknown."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def send(self, kind: str, **fields: object) -> None:
        try:
            self.process.stdin.write(json.dumps({"kind": kind, **fields}).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except OSError as e:
            raise DaemonError(f"{self.label}: cannot send {kind!r}: {e}\n{self.describe()}") from None

    def mark(self) -> int:
        """How many lines so far; pass it as ``since`` to look only at newer ones."""
        with self._changed:
            return len(self._lines)

    def wait_for(self, kind: str, timeout: float = STEP_TIMEOUT, since: int = 0) -> tuple[float, dict]:
        """(arrival time, line) of the first ``kind`` line from ``since`` on; failure lines raise."""
        deadline = time.monotonic() + timeout
        index = since
        with self._changed:
            while True:
                for arrived, line in self._lines[index:]:
                    index += 1
                    if line.get("kind") == kind:
                        return arrived, line
                    if line.get("kind") in _FAILURES:
                        raise DaemonError(f"{self.label} reported {json.dumps(line)}\n{self.describe()}")
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"sent nothing matching within {timeout}s"
                    raise DaemonError(f"{self.label} {why} while waiting for {kind!r}\n{self.describe()}")
                self._changed.wait(remaining)

    def describe(self) -> str:
        _, err = self._group.output(self.process)
        return f"stderr of {self.label} (pid {self.pid}):\n{err[-1500:]}"

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """End the process by its PID (SIGTERM, then SIGKILL) and collect the last lines."""
        self.terminate()
        self._reader.join(servers.STOP_TIMEOUT)
        self._group.stop(self.process)


@dataclass
class Forward:
    """A running pair with the forward set up; ``address`` reaches the target through it."""

    implementation: Implementation
    service: Daemon
    client: Daemon
    address: Address
    timings: dict[str, float] = field(default_factory=dict)  # seconds after spawning
    path: str | None = None  # "direct" or "relay", when the daemon reports it

    @property
    def daemons(self) -> tuple[Daemon, Daemon]:
        return self.service, self.client

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.terminate()  # both at once, then wait for each
        for daemon in self.daemons:
            daemon.stop()


def open_forward(
    group: servers.ProcessGroup,
    implementation: Implementation,
    mailbox_url: str,
    relay: str | None,
    target_port: int,
    timeout: float = STEP_TIMEOUT,
) -> Forward:
    """Spawn a pair, pair it through the mailbox, offer ``bench`` and echo one byte through it.

    ``timings`` holds when each step was seen, in seconds after spawning;
    ``usable`` is when the first byte came back through the forward.
    """
    listen_port = servers.free_port()
    argv = implementation.command(mailbox_url, relay)
    client_argv = (implementation.client_command or implementation.command)(mailbox_url, relay)
    start = time.perf_counter()
    service = Daemon(group, argv, f"{implementation.key}-service")
    try:
        client = Daemon(group, client_argv, f"{implementation.key}-client")
    except BaseException:
        service.stop()
        raise
    forward = Forward(implementation, service, client, (servers.LOOPBACK, listen_port))
    try:
        client.send("local", name=SERVICE, local_listen_port=listen_port)
        service.send("remote", name=SERVICE, local_connect_port=target_port)
        service.send("allocate-code")
        _, allocated = service.wait_for("code-allocated", timeout)
        client.send("set-code", code=allocated["code"])
        client.wait_for("listening", timeout)
        # upstream as the service refuses streams until it has the client's listener response
        service.wait_for("awaiting-connect", timeout)
        first_echo(forward.address)
        usable = time.perf_counter()
        steps = {
            "welcome": service.wait_for("welcome", 0)[0],
            "code": service.wait_for("code-allocated", 0)[0],
            "peer": client.wait_for("peer-connected", 0)[0],
            "listening": client.wait_for("listening", 0)[0],
            "usable": usable,
        }
        forward.timings = {step: at - start for step, at in steps.items()}
        if implementation.has_status:
            since = client.mark()
            client.send("status")
            forward.path = client.wait_for("status", timeout, since)[1].get("path")
    except BaseException:
        forward.stop()
        raise
    return forward
