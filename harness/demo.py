"""``python -m harness.demo`` (``make demo``): two computers forwarding a web page, on this one.

"alice" and "bob" each get a D-Bus session bus, a profiles directory and a
fowld of their own; they meet on a mailbox server and a transit relay started
on loopback, so nothing leaves this machine. Alice offers a small web server,
bob asks for it on a local port, and the page fetched through bob's side must
be the one alice serves. Every process started here is stopped by its PID at
the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds for a server or fowld to come up
CONNECT_TIMEOUT = 30.0  # seconds for the two fowlds to connect
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
_CODE_LINE = re.compile(r"^\s+(\d+(?:-[A-Za-z0-9]+)+)\s*$")
_URL_LINE = re.compile(r"^ws://\S+/v1$")
FOWLD = [sys.executable, "-m", "fowld"]


class DemoError(RuntimeError):
    """A step failed; the message says which, and the demo shows the relevant logs."""


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class LineReader:
    """Reads a child's output line by line, never waiting past a deadline."""

    def __init__(self, stream) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self.closed = False

    def readline(self, deadline: float) -> str | None:
        """The next line, or None at end of output; DemoError when the deadline passes."""
        while b"\n" not in self._buffer:
            if self.closed:
                line, self._buffer = self._buffer, b""
                return line.decode(errors="replace") if line else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoError("timed out waiting for output")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 4096)
                self._buffer += chunk
                self.closed = not chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")


@dataclass
class Computer:
    """One side of the demo: its name, its bus and its fowld's environment."""

    name: str
    home: Path
    env: dict
    bus: str = ""


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[tuple[str, subprocess.Popen]] = []

    # --- processes -------------------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], env: dict | None = None, capture: bool = False
    ) -> subprocess.Popen:
        """Start a process whose stderr (and stdout, unless captured) goes to ``workdir/NAME.log``."""
        with open(self.workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else log,
                stderr=log,
            )
        self.processes.append((name, process))
        return process

    def stop_all(self) -> None:
        """Stop every process, newest first, by its PID."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
        self.processes.clear()

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def first_line(self, name: str, process: subprocess.Popen, pattern: re.Pattern) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        reader = LineReader(process.stdout)
        while (line := reader.readline(deadline)) is not None:
            if pattern.match(line.strip()):
                return line.strip()
        raise DemoError(f"{name} exited (code {process.wait()}) before it was ready:\n{self.log_tail(name)}")

    def wait_for_port(self, name: str, process: subprocess.Popen, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}")
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise DemoError(f"{name} did not listen on port {port} within {START_TIMEOUT:g} s")

    # --- fowlctl ---------------------------------------------------------------------------

    def fowlctl(self, who: Computer, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "fowlctl", *args]
        process = subprocess.Popen(
            argv, env=who.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.processes.append((f"fowlctl-{args[0]}", process))
        return process

    def show(self, who: Computer, *args: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Run fowlctl as ``who``, echoing the command and its output; fail unless it exits 0."""
        say(f"  {who.name}$ fowlctl {' '.join(args)}")
        process = self.fowlctl(who, *args)
        output = self.echo_until_exit(process, time.monotonic() + timeout)
        if process.returncode != 0:
            raise DemoError(f"fowlctl {args[0]} failed (exit code {process.returncode})")
        return output

    def quietly(self, who: Computer, *args: str) -> dict:
        """Run ``fowlctl --json ARGS`` as ``who`` and return what it printed."""
        result = subprocess.run(
            [sys.executable, "-m", "fowlctl", "--json", *args],
            env=who.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if result.returncode != 0:
            raise DemoError(f"fowlctl {args[0]} failed: {result.stderr.strip()}")
        return json.loads(result.stdout)

    @staticmethod
    def echo_until_exit(process: subprocess.Popen, deadline: float, reader: LineReader | None = None) -> str:
        reader = reader or LineReader(process.stdout)
        lines = []
        while (line := reader.readline(deadline)) is not None:
            say(f"    | {line}")
            lines.append(line)
        process.wait(max(0.1, deadline - time.monotonic()))
        return "\n".join(lines)

    def wait_for_fowld(self, who: Computer, process: subprocess.Popen) -> None:
        """Return once ``who``'s fowld answers on its bus."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"fowld of {who.name} exited:\n{self.log_tail(f'fowld-{who.name}')}")
            check = subprocess.run(
                [sys.executable, "-m", "fowlctl", "profiles"],
                env=who.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=START_TIMEOUT,
            )
            if check.returncode == 0:
                return
            time.sleep(0.1)
        raise DemoError(f"fowld of {who.name} did not come up within {START_TIMEOUT:g} s")

    # --- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        say('fowld demo: two computers, "alice" and "bob", simulated on this one; nothing leaves loopback.')
        say()
        say("[1/6] Starting a mailbox server, where the two fowlds meet, and a transit relay")
        mailbox = self.spawn(
            "mailbox",
            [sys.executable, "-m", "fowld.mailbox", "--listen", f"tcp:0:interface={LOOPBACK}"],
            capture=True,
        )
        relay_port = free_port()
        relay = self.spawn(
            "relay",
            [
                sys.executable,
                "-m",
                "twisted",
                "transitrelay",
                f"--port=tcp:{relay_port}:interface={LOOPBACK}",
            ],
        )
        page = f"<h1>Hello from alice</h1>\n<p>token {secrets.token_hex(8)}</p>\n".encode()
        site = self.workdir / "site"
        site.mkdir()
        (site / "index.html").write_bytes(page)
        http_port = free_port()
        http = self.spawn(
            "web-server",
            [
                sys.executable,
                "-m",
                "http.server",
                str(http_port),
                "--bind",
                LOOPBACK,
                "--directory",
                str(site),
            ],
        )
        alice, bob = self.computer("alice"), self.computer("bob")
        buses = {c.name: self.spawn_bus(c) for c in (alice, bob)}

        mailbox_url = self.first_line("mailbox", mailbox, _URL_LINE)
        self.wait_for_port("relay", relay, relay_port)
        relay_hint = f"tcp:{LOOPBACK}:{relay_port}"
        say(f"      mailbox {mailbox_url}, relay {relay_hint}")
        self.wait_for_port("web-server", http, http_port)
        say(f"[2/6] Alice runs a web server at http://{LOOPBACK}:{http_port}/ (only she can reach it)")

        say("[3/6] Each computer gets its own session bus, profile and fowld")
        common = f"mailbox: {mailbox_url}\ntransit-relay: {relay_hint}\nrestart: never\n"
        self.write_profile(
            alice,
            "share-web",
            f"description: Show my web page to bob\n{common}"
            f"services:\n  - name: web\n    connect: tcp:{LOOPBACK}:{http_port}\n",
        )
        self.write_profile(
            bob,
            "see-web",
            f"description: See alice's web page\n{common}"
            f"clients:\n  - name: web\n    listen: tcp:0:interface={LOOPBACK}\n",
        )
        say(f"      alice: profile share-web offers web -> tcp:{LOOPBACK}:{http_port}")
        say("      bob:   profile see-web wants web, on any free local port")
        say(f"      both run `fowld --direct-address {LOOPBACK}`: they connect directly over loopback")
        say("      (the relay stands by for peers that cannot reach each other directly)")
        daemons = {}
        for c in (alice, bob):
            c.bus = self.first_line(f"dbus-{c.name}", buses[c.name], re.compile(r"^unix:"))
            c.env["DBUS_SESSION_BUS_ADDRESS"] = c.bus
            daemons[c.name] = self.spawn(f"fowld-{c.name}", FOWLD + ["--direct-address", LOOPBACK], env=c.env)
        for c in (alice, bob):
            self.wait_for_fowld(c, daemons[c.name])

        say("[4/6] Alice invites; she reads the code to bob, who accepts it")
        say(f"  {alice.name}$ fowlctl invite share-web --timeout {CONNECT_TIMEOUT:g}")
        invite = self.fowlctl(alice, "invite", "share-web", "--timeout", f"{CONNECT_TIMEOUT:g}")
        invite_out = LineReader(invite.stdout)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        code, line = None, ""
        # Show everything up to "Waiting for the peer...", picking the code out on the way.
        while code is None or not line.startswith("Waiting for the peer"):
            line = invite_out.readline(deadline)
            if line is None:
                raise DemoError(f"fowlctl invite exited (code {invite.wait()}) before the peer could join")
            say(f"    | {line}")
            if m := _CODE_LINE.match(line):
                code = m.group(1)
        self.show(bob, "accept", "see-web", code, "--timeout", f"{CONNECT_TIMEOUT:g}")
        say("  (alice's fowlctl invite, continued)")
        self.echo_until_exit(invite, deadline, invite_out)
        if invite.returncode != 0:
            raise DemoError(f"fowlctl invite failed (exit code {invite.returncode})")

        say("[5/6] Bob fetches the page through his side of the tunnel")
        (session,) = self.quietly(bob, "list")["sessions"]
        (client,) = session["clients"]
        url = f"http://{LOOPBACK}:{client['port']}/"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        with opener.open(url, timeout=CONNECT_TIMEOUT) as response:
            fetched = response.read()
        if fetched != page:
            raise DemoError(f"bob got a different page from {url}:\n{fetched[:200]!r}")
        say(f"      GET {url} -> {len(fetched)} bytes, identical to the page alice serves:")
        for line in fetched.decode().splitlines():
            say(f"    | {line}")

        say("[6/6] What each side's fowld reports")
        self.show(alice, "status")
        self.show(bob, "status")

    def computer(self, name: str) -> Computer:
        home = self.workdir / name
        (home / "config").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_"))}
        env["XDG_CONFIG_HOME"] = str(home / "config")
        return Computer(name, home, env)

    def spawn_bus(self, who: Computer) -> subprocess.Popen:
        dbus_daemon = shutil.which("dbus-daemon")
        if dbus_daemon is None:
            raise DemoError(
                "dbus-daemon is not installed (run `make setup`, or install the Debian package dbus)"
            )
        argv = [
            dbus_daemon,
            "--session",
            "--nofork",
            "--print-address=1",
            f"--address=unix:path={who.home / 'bus'}",
        ]
        return self.spawn(f"dbus-{who.name}", argv, capture=True)

    @staticmethod
    def write_profile(who: Computer, name: str, text: str) -> None:
        directory = Path(who.env["XDG_CONFIG_HOME"]) / "fowl" / "profiles"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.yaml"
        path.write_text(text)
        path.chmod(0o600)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # A short directory: UNIX socket paths are limited to about 100 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="fowld-demo-", dir="/tmp" if os.path.isdir("/tmp") else None))
    demo = Demo(workdir)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        demo.run()
    except KeyboardInterrupt:
        say("\nInterrupted; stopping everything.")
        return 130
    except (DemoError, OSError, subprocess.SubprocessError, ValueError) as e:
        say(f"\nThe demo failed: {e}")
        for name in ("fowld-alice", "fowld-bob"):
            if tail := demo.log_tail(name):
                say(f"--- end of {name}'s log ---\n{tail}")
        return 1
    finally:
        demo.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"\nDone in {time.monotonic() - started:.1f} s: every process the demo started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
