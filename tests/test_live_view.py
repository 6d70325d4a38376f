"""`fowlctl top` and the invite QR code: pure rendering, then real runs in a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time

import pytest
from test_adhoc import _connect_pair, adhoc_pair, echo_server
from test_fowlctl import FOWLCTL, PROPS, STEP_TIMEOUT, _close_all

from fowlctl import cli
from fowlctl.errors import ExitCode
from fowlctl.model import session_from_properties
from fowlctl.render import qr_code
from fowlctl.top import LEAVE, reading, top_screen
from fowlctl.watch import event_json, event_line, present_event

__all__ = ["adhoc_pair", "echo_server"]  # fixtures these tests use

NOW = 1795838900.0


def _session(**changes):
    props = {**PROPS, **changes}
    return session_from_properties("/org/fowl/Fowld1/session/web_2d4", props)


def test_top_screen_shows_rates_and_totals_per_session_and_connection() -> None:
    conn = (3, "ssh", "incoming", 3 * 2**20, 2048, int((NOW - 75) * 1e6))
    before = reading(
        [_session(BytesIn=2048, BytesOut=100, Connections=[(3, "ssh", "incoming", 2**20, 0, 0)])]
    )
    now = _session(BytesIn=2048 + 2 * 2**20, BytesOut=100 + 2048, Connections=[conn], OpenConnections=1)
    lines = top_screen([now], before, 2.0, NOW).splitlines()
    assert lines[0].startswith("fowld: 1 session, 1 open connection  ")
    assert lines[2].split() == ["SESSION", "STATE", "PEER", "CONNS", "RATE(IN/OUT)", "TOTAL(IN/OUT)"]
    assert re.fullmatch(
        r"web-4 +connected +direct +1/\d+ +1\.0 MiB/s / 1\.0 KiB/s +2\.0 MiB / 2\.1 KiB", lines[3]
    )
    assert re.fullmatch(
        r"  #3 ssh \(incoming, 1 min\) +1\.0 MiB/s / 1\.0 KiB/s +3\.0 MiB / 2\.0 KiB", lines[4]
    )


def test_top_screen_without_a_previous_reading_or_sessions() -> None:
    assert "  -  " in top_screen([_session()], {}, 0.0, NOW).splitlines()[3]
    assert top_screen([], {}, 1.0, NOW).endswith("\n\nNo sessions.")


def test_top_refuses_to_draw_into_a_pipe(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["top"])
    assert exited.value.code == ExitCode.USAGE
    assert "top draws on a terminal; for scripts use `fowlctl watch --json`" in capsys.readouterr().err


def test_qr_code_is_blocks_around_the_code() -> None:
    drawn = qr_code("7-crossover-clockwork").splitlines()
    assert len(drawn) > 10 and len({len(line) for line in drawn}) == 1  # a square of half blocks
    assert set("".join(drawn)) <= set("█▀▄ \xa0")


class Terminal:
    """A process whose stdout and stderr are a real pseudo-terminal."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self._fd, child = pty.openpty()
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
        os.close(child)
        self.screen = b""

    def read_until(self, pattern: bytes, timeout: float = STEP_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.screen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} not shown within {timeout} s: {self.screen[-2000:]!r}")
            if select.select([self._fd], [], [], remaining)[0]:
                try:
                    self.screen += os.read(self._fd, 65536)
                except OSError:  # the process closed the terminal
                    raise AssertionError(f"{pattern!r} never shown: {self.screen[-2000:]!r}") from None
        return self.screen

    def stop(self, interrupt: bool = True) -> int:
        """Ctrl-C if still running (unless it ends by itself); the exit code, once all output is read."""
        if interrupt and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(STEP_TIMEOUT)
            while select.select([self._fd], [], [], 1)[0]:
                try:
                    chunk = os.read(self._fd, 65536)
                except OSError:  # closed: everything is read
                    break
                if not chunk:
                    break
                self.screen += chunk
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self._fd)
        return code


def test_top_in_a_terminal_follows_a_busy_connection(adhoc_pair, processes, echo_server, mailbox) -> None:
    alice, bob = adhoc_pair
    alice_id, _ = _connect_pair(alice, bob, processes, echo_server, mailbox)
    port = next(c["port"] for s in bob.sessions() for c in s["clients"])
    stop = threading.Event()

    def traffic() -> None:  # one connection kept busy while top watches
        with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as s:
            while not stop.is_set():
                s.sendall(os.urandom(32768))
                s.recv(65536)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    top = Terminal([*FOWLCTL, "top", "--interval", "0.5"], alice.env)
    try:
        screen = top.read_until(rb"#1 echo \(incoming, \d+ s\) +[1-9][0-9.]* [KM]iB/s / ")
        assert b"\x1b[?1049h" in screen  # the alternate screen, as top uses
        assert re.search(rb"fowld: 1 session, 1 open connection  ", screen)
        assert re.search(alice_id.encode() + rb" +connected +relay +1/1 ", screen)
    finally:
        stop.set()
        sender.join(STEP_TIMEOUT)
        assert top.stop() == 0
    assert top.screen.endswith(LEAVE.encode())  # the terminal is left as it was
    _close_all(alice, bob)


def test_invite_shows_a_qr_code_on_a_terminal_only(adhoc_pair, processes) -> None:
    alice, _ = adhoc_pair
    invite = Terminal([*FOWLCTL, "invite", "--offer", "web=8000", "--no-wait"], alice.env)
    invite.read_until(b"Or they scan the code:\r\n")
    assert invite.stop(interrupt=False) == 0  # --no-wait: it ends by itself, all it wrote read
    # a QR code: rows of half and full blocks (which ones depends on how its rows pair up)
    lines = invite.screen.decode("utf-8", "replace").splitlines()
    rows = [line for line in lines if sum(c in "▀▄█" for c in line) >= 10]
    assert len(rows) >= 5, invite.screen
    plain = Terminal([*FOWLCTL, "invite", "--offer", "web=8000", "--no-wait", "--no-qr"], alice.env)
    screen = plain.read_until(b"They join with:  fowlctl accept [-0-9a-z]+ --want web\r\n")
    assert plain.stop(interrupt=False) == 0
    assert "▀".encode() not in screen
    piped = alice.ctl("invite", "--offer", "web=8000", "--no-wait")
    assert piped.returncode == 0 and "Or they scan" not in piped.stdout
    _close_all(alice)


def test_watch_snapshot_line() -> None:
    e = present_event(_session(OpenConnections=2), NOW)
    assert event_line(e).endswith("  web-4  present (profile web): connected, 2 open, 2.0 KiB in, 100 B out")
    assert event_json(e) == {
        "time": "2026-11-28T04:08:20.000Z",
        "event": "session-present",
        "session": "web-4",
        "profile": "web",
        "state": "connected",
        "reason": "",
        "open_connections": 2,
        "bytes_in": 2048,
        "bytes_out": 100,
    }
