"""examples/notify.py against a real notification server (dunst on Xvfb) and a real fowld.

The notification server records every notification it shows through a dunst
rule's script; the test then finds the code, the verifier and the failure there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_fowlctl import FOWLCTL, _clean_env

from harness.servers import REPO_ROOT, ProcessGroup, read_line
from harness.wait import until

NOTIFY = REPO_ROOT / "examples" / "notify.py"
RUN_TIMEOUT = 60.0
PACKAGES = {"Xvfb": "xvfb", "dunst": "dunst"}
DUNSTRC = """\
[global]
    history_length = 50
[record]
    appname = fowld
    script = {script}
"""
RECORD = '#!/bin/sh\nprintf "%s|%s|%s\\n" "$1" "$2" "$3" >> {file}\n'


def _notification_server_programs() -> None:
    missing = [package for program, package in PACKAGES.items() if shutil.which(program) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            capture_output=True,
            timeout=600,
        )
        missing = [package for program, package in PACKAGES.items() if shutil.which(program) is None]
    if missing:
        pytest.skip(f"a notification server needs the Debian packages {', '.join(missing)}")


@pytest.fixture
def desktop(dbus_bus, processes: ProcessGroup, tmp_path: Path) -> dict:
    """A private bus with an X server and dunst on it; returns the environment and the record file."""
    _notification_server_programs()
    xvfb = processes.spawn(
        ["Xvfb", "-displayfd", "1", "-nolisten", "tcp"], stdout=subprocess.PIPE, name="Xvfb"
    )
    display = ":" + read_line(xvfb.stdout, RUN_TIMEOUT).decode().strip()
    record = tmp_path / "shown"
    script = tmp_path / "record.sh"
    script.write_text(RECORD.format(file=record))
    script.chmod(0o700)
    (tmp_path / "dunstrc").write_text(DUNSTRC.format(script=script))
    env = _clean_env(
        DBUS_SESSION_BUS_ADDRESS=dbus_bus.address, DISPLAY=display, XDG_CONFIG_HOME=str(tmp_path)
    )
    processes.spawn(["dunst", "-config", str(tmp_path / "dunstrc")], env=env, name="dunst")

    def serving() -> bool:
        result = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.Notifications",
             "/org/freedesktop/Notifications", "org.freedesktop.Notifications.GetServerInformation"],
            env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )  # fmt: skip
        return '"dunst"' in result.stdout

    until(serving, "dunst on the bus", RUN_TIMEOUT, 0.1)
    return {"env": env, "record": record}


def _shown(record: Path) -> list[tuple[str, str, str]]:
    if not record.exists():
        return []
    return [tuple(line.split("|", 2)) for line in record.read_text().splitlines()]


def test_notifications_for_code_peer_and_failure(desktop, processes, mailbox, transit_relay) -> None:
    env, record = desktop["env"], desktop["record"]
    daemon = [sys.executable, "-m", "fowld", "--relay-only", "--mailbox", mailbox.url]
    processes.spawn([*daemon, "--transit-relay", transit_relay.hint], env=env, name="fowld")

    def fowlctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FOWLCTL, *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)

    until(lambda: fowlctl("profiles").returncode == 0, "fowld on its bus", RUN_TIMEOUT, 0.1)
    notify = processes.spawn([sys.executable, str(NOTIFY)], env=env, stderr=subprocess.PIPE, name="notify")
    assert b"following fowld's sessions" in read_line(notify.stderr, RUN_TIMEOUT)

    invite = processes.spawn(
        [*FOWLCTL, "invite", "--offer", "web=8080", "--json"], env=env, stdout=subprocess.PIPE, name="invite"
    )
    code = json.loads(read_line(invite.stdout, RUN_TIMEOUT))["code"]
    accepted = fowlctl("accept", code, "--want", "web", "--json", "--timeout", "40")  # both sides here
    assert accepted.returncode == 0, accepted.stderr
    verifier = json.loads(accepted.stdout.splitlines()[-1])["session"]["verifier"]
    grouped = " ".join(verifier[i : i + 4] for i in range(0, len(verifier), 4))

    wrong = processes.spawn(
        [*FOWLCTL, "invite", "--offer", "web=8080", "--json"], env=env, stdout=subprocess.PIPE, name="invite"
    )
    nameplate = json.loads(read_line(wrong.stdout, RUN_TIMEOUT))["code"].split("-")[0]
    fowlctl("accept", f"{nameplate}-not-it", "--want", "web", "--timeout", "40")

    wanted = {
        ("fowld", "adhoc-1: waiting for the peer", f"The code is {code}"),
        ("fowld", "adhoc-1: peer connected", f"Verifier {grouped}: compare it with your peer's."),
        ("fowld", "adhoc-2: peer connected", f"Verifier {grouped}: compare it with your peer's."),
    }

    def all_shown() -> bool:
        shown = set(_shown(record))
        failed = [s for s in shown if s[1] == "adhoc-3 failed"]
        return wanted <= shown and bool(failed)

    until(all_shown, lambda: f"the notifications (shown so far: {_shown(record)})", RUN_TIMEOUT, 0.1)
    failed = next(s for s in _shown(record) if s[1] == "adhoc-3 failed")
    assert failed[2].startswith("wrong code: "), failed
    assert notify.poll() is None  # still following


def _notify_module():
    spec = importlib.util.spec_from_file_location("notify_example", NOTIFY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_which_changes_deserve_a_notification() -> None:
    messages = _notify_module().messages
    waiting = {"Id": "adhoc-1", "State": "waiting", "Code": "7-a-b"}
    assert messages({"Id": "adhoc-1", "State": "starting"}, waiting) == [
        ("adhoc-1: waiting for the peer", "The code is 7-a-b")
    ]
    connected = {**waiting, "State": "connected"}
    assert messages(waiting, connected) == []  # no verifier yet: wait for it
    verified = {**connected, "Verifier": "0123456789abcdef"}
    assert messages(connected, verified) == [
        ("adhoc-1: peer connected", "Verifier 0123 4567 89ab cdef: compare it with your peer's.")
    ]
    assert messages(verified, {**verified, "Path": "relay"}) == []  # said once
    failed = {**verified, "State": "failed", "StateReason": "wrong code: x"}
    assert messages(verified, failed) == [("adhoc-1 failed", "wrong code: x")]
