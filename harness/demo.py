"""``python -m harness.demo`` (``make demo``): two computers forwarding a web page, on this one.

"alice" and "bob" each get a D-Bus session bus, a profiles directory and a
fowld of their own; they meet on a mailbox server and a transit relay started
on loopback, so nothing leaves this machine. Alice offers a small web server,
bob asks for it on a local port, and the page fetched through bob's side must
be the one alice serves. Every process is started in the harness's
ProcessGroup and stopped by its PID at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.fowld import spawn_fowld, write_profile
from harness.servers import (
    LOOPBACK,
    ProcessGroup,
    ServerError,
    dbus_daemon,
    free_port,
    read_line,
    start_dbus_bus,
    start_transit_relay,
    wait_for_port,
)
from harness.wait import until

START_TIMEOUT = 20.0  # seconds for a server or fowld to come up
CONNECT_TIMEOUT = 30.0  # seconds for the two fowlds to connect
_CODE_LINE = re.compile(r"^\s+(\d+(?:-[A-Za-z0-9]+)+)\s*$")
_URL_LINE = re.compile(r"^ws://\S+/v1$")
FOWLCTL = [sys.executable, "-m", "fowlctl"]


class DemoError(RuntimeError):
    """A step failed; the message says which, and the demo shows the relevant logs."""


def say(text: str = "") -> None:
    print(text, flush=True)


def next_line(process: subprocess.Popen, deadline: float) -> str | None:
    """The next line ``process`` printed (without its newline), or None at the end of its output."""
    try:
        return read_line(process.stdout, max(deadline - time.monotonic(), 0.0)).decode(errors="replace")[:-1]
    except EOFError:
        return None
    except TimeoutError:
        raise DemoError("timed out waiting for output") from None


@dataclass
class Computer:
    """One side of the demo: its name, its bus and its fowld's environment."""

    name: str
    home: Path
    env: dict
    fowld: subprocess.Popen | None = None


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.group = ProcessGroup(workdir / "logs")
        self.computers: list[Computer] = []

    # --- processes -------------------------------------------------------------------------

    def first_line(self, name: str, process: subprocess.Popen, pattern: re.Pattern) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(1000):  # a server prints a few lines before the one we want
            line = next_line(process, deadline)
            if line is None:
                break
            if pattern.match(line.strip()):
                return line.strip()
        raise DemoError(
            f"{name} exited (code {process.wait()}) before it was ready:\n{self.log_tail(process)}"
        )

    def log_tail(self, process: subprocess.Popen, lines: int = 15) -> str:
        _, err = self.group.output(process)
        return "\n".join(err.splitlines()[-lines:])

    # --- fowlctl ---------------------------------------------------------------------------

    def fowlctl(self, who: Computer, *args: str) -> subprocess.Popen:
        return self.group.spawn(
            [*FOWLCTL, *args], env=who.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, name="fowlctl"
        )

    def show(self, who: Computer, *args: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Run fowlctl as ``who``, echoing the command and its output; fail unless it exits 0."""
        say(f"  {who.name}$ fowlctl {' '.join(args)}")
        process = self.fowlctl(who, *args)
        output = self.echo_until_exit(process, time.monotonic() + timeout)
        if process.returncode != 0:
            raise DemoError(f"fowlctl {args[0]} failed (exit code {process.returncode})")
        return output

    def quietly(self, who: Computer, *args: str, check: bool = True) -> dict | None:
        """Run ``fowlctl --json ARGS`` as ``who`` and return what it printed (None if it failed)."""
        result = subprocess.run(
            [*FOWLCTL, "--json", *args],
            env=who.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if result.returncode != 0 and check:
            raise DemoError(f"fowlctl {args[0]} failed: {result.stderr.strip()}")
        return json.loads(result.stdout) if result.returncode == 0 else None

    @staticmethod
    def echo_until_exit(process: subprocess.Popen, deadline: float) -> str:
        lines = []
        for _ in range(10_000):  # bounded: fowlctl prints a screenful at most
            line = next_line(process, deadline)
            if line is None:
                break
            say(f"    | {line}")
            lines.append(line)
        process.wait(max(0.1, deadline - time.monotonic()))
        return "\n".join(lines)

    def wait_for_fowld(self, who: Computer) -> None:
        """Return once ``who``'s fowld answers on its bus."""
        try:
            until(
                lambda: self.quietly(who, "profiles", check=False) is not None,
                f"fowld of {who.name} on its bus",
                START_TIMEOUT,
                0.1,
                process=who.fowld,
            )
        except TimeoutError as e:
            raise DemoError(f"{e}\n{self.log_tail(who.fowld)}") from None

    # --- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        say('fowld demo: two computers, "alice" and "bob", simulated on this one; nothing leaves loopback.')
        say()
        say("[1/6] Starting a mailbox server, where the two fowlds meet, and a transit relay")
        mailbox = self.group.spawn(
            [sys.executable, "-m", "fowld.mailbox", "--listen", f"tcp:0:interface={LOOPBACK}"],
            stdout=subprocess.PIPE,
            name="mailbox",
        )
        page = f"<h1>Hello from alice</h1>\n<p>token {secrets.token_hex(8)}</p>\n".encode()
        site = self.workdir / "site"
        site.mkdir()
        (site / "index.html").write_bytes(page)
        http_port = free_port()
        http = self.group.spawn(
            [sys.executable, "-m", "http.server", str(http_port), "--bind", LOOPBACK, "--directory", site],
            name="web-server",
        )
        alice, bob = self.computer("alice"), self.computer("bob")
        if dbus_daemon() is None:
            raise DemoError(
                "dbus-daemon is not installed (run `make setup`, or install the Debian package dbus)"
            )
        buses = {c.name: start_dbus_bus(self.group, c.home, START_TIMEOUT) for c in (alice, bob)}

        mailbox_url = self.first_line("mailbox", mailbox, _URL_LINE)
        relay_hint = start_transit_relay(self.group, START_TIMEOUT).hint
        say(f"      mailbox {mailbox_url}, relay {relay_hint}")
        wait_for_port(LOOPBACK, http_port, START_TIMEOUT, http)
        say(f"[2/6] Alice runs a web server at http://{LOOPBACK}:{http_port}/ (only she can reach it)")

        say("[3/6] Each computer gets its own session bus, profile and fowld")
        common = f"mailbox: {mailbox_url}\ntransit-relay: {relay_hint}\nrestart: never\n"
        write_profile(
            alice.home / "config/fowl/profiles",
            "share-web",
            f"description: Show my web page to bob\n{common}"
            f"services:\n  - name: web\n    connect: tcp:{LOOPBACK}:{http_port}\n",
        )
        write_profile(
            bob.home / "config/fowl/profiles",
            "see-web",
            f"description: See alice's web page\n{common}"
            f"clients:\n  - name: web\n    listen: tcp:0:interface={LOOPBACK}\n",
        )
        say(f"      alice: profile share-web offers web -> tcp:{LOOPBACK}:{http_port}")
        say("      bob:   profile see-web wants web, on any free local port")
        say(f"      both run `fowld --direct-address {LOOPBACK}`: they connect directly over loopback")
        say("      (the relay stands by for peers that cannot reach each other directly)")
        for c in (alice, bob):
            c.env["DBUS_SESSION_BUS_ADDRESS"] = buses[c.name].address
            c.fowld = spawn_fowld(self.group, "--direct-address", LOOPBACK, env=c.env, name=f"fowld-{c.name}")
        for c in (alice, bob):
            self.wait_for_fowld(c)

        say("[4/6] Alice invites; she reads the code to bob, who accepts it")
        say(f"  {alice.name}$ fowlctl invite share-web --timeout {CONNECT_TIMEOUT:g}")
        invite = self.fowlctl(alice, "invite", "share-web", "--timeout", f"{CONNECT_TIMEOUT:g}")
        deadline = time.monotonic() + CONNECT_TIMEOUT
        code, line = None, ""
        # Show everything up to "Waiting for the peer...", picking the code out on the way.
        for _ in range(1000):
            if code is not None and line.startswith("Waiting for the peer"):
                break
            line = next_line(invite, deadline)
            if line is None:
                raise DemoError(f"fowlctl invite exited (code {invite.wait()}) before the peer could join")
            say(f"    | {line}")
            if m := _CODE_LINE.match(line):
                code = m.group(1)
        self.show(bob, "accept", "see-web", code, "--timeout", f"{CONNECT_TIMEOUT:g}")
        say("  (alice's fowlctl invite, continued)")
        self.echo_until_exit(invite, deadline)
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
        self.computers.append(Computer(name, home, env))
        return self.computers[-1]


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
    except (DemoError, ServerError, OSError, subprocess.SubprocessError, ValueError) as e:
        say(f"\nThe demo failed: {e}")
        for c in demo.computers:
            if c.fowld is not None and (tail := demo.log_tail(c.fowld)):
                say(f"--- end of fowld-{c.name}'s log ---\n{tail}")
        return 1
    finally:
        demo.group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"\nDone in {time.monotonic() - started:.1f} s: every process the demo started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
