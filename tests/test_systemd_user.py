"""The user unit under a real systemd: a user manager, its session bus, journald.

A throw-away machine (harness/machine.py: systemd as PID 1 of private
namespaces over an overlay of /) has two users, alice and bob, each with
``user@UID.service``. Each runs `fowld install` as a new user would; every test
then checks one claim of docs/systemd.md with `systemctl --user`, busctl and
fowlctl. A mailbox and a transit relay run in the machine, on its own loopback.

fowld runs from this tree: the unit's ExecStart= is the installed console
script, and a drop-in of the test's own (`source.conf`) sets PYTHONPATH, as
the test process has it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import machine as machines
from harness.machine import Machine, User
from harness.servers import venv_script

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "systemd.md"
ALICE = User("alice", 4201)
BOB = User("bob", 4202)
MAILBOX = "ws://127.0.0.1:4000/v1"
RELAY = "tcp:127.0.0.1:4001"
WAIT = 45.0  # seconds for anything systemd does here; RestartSec=5 is the longest step
PROFILES = {
    "share-web": f"mailbox: {MAILBOX}\ntransit-relay: {RELAY}\n"
    "services:\n  - name: web\n    connect: tcp:127.0.0.1:8000\n",
    "see-web": f"mailbox: {MAILBOX}\ntransit-relay: {RELAY}\n"
    "clients:\n  - name: web\n    listen: tcp:8080:interface=127.0.0.1\n",
}
PING = [
    "busctl",
    "--user",
    "call",
    "org.fowl.Fowld1",
    "/org/fowl/Fowld1",
    "org.freedesktop.DBus.Peer",
    "Ping",
]
TEST_DROP_IN = "zz-test.conf"  # the drop-in a test adds for itself; removed after each test

pytestmark = pytest.mark.skipif(machines.unavailable() is not None, reason=str(machines.unavailable()))
# The whole module takes about 90 s; these take half of it (restart delays, watchdog intervals).
slow = pytest.mark.skipif(os.environ.get("FOWL_SLOW") != "1", reason="slow: run with FOWL_SLOW=1")


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Iterator[Machine]:
    # The test's interpreter lives wherever the venv points (perhaps under /root).
    python = Path(sys.executable).resolve()
    closed = [p for p in python.parents if not p.stat().st_mode & stat.S_IXOTH]
    opened = " ; ".join(f"chmod o+x {shlex.quote(str(p))}" for p in closed)
    # The tree under test and its venv, wherever they are (a checkout in /tmp, too).
    share = [REPO, Path(sys.prefix)]
    booted = Machine([ALICE, BOB], tmp_path_factory.mktemp("machine"), setup=opened or "true", share=share)
    try:
        booted.boot()
        source = {"PYTHONPATH": str(REPO)}
        twist = str(venv_script("twist"))
        booted.spawn(
            ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "fowld.mailbox", "--listen", "tcp:4000"],
            name="mailbox",
        )
        booted.spawn([twist, "transitrelay", "--port=tcp:4001:interface=127.0.0.1"], name="relay")
        for user in (ALICE, BOB):
            installed = booted.run([str(venv_script("fowld")), "install"], user=user, env=source)
            assert "ran systemctl --user daemon-reload" in installed.stdout, installed.stdout
            write_file(
                booted,
                user,
                ".config/systemd/user/fowld.service.d/source.conf",
                f"[Service]\nEnvironment=PYTHONPATH={REPO}\n",
            )
            for name, text in PROFILES.items():
                write_file(booted, user, f".config/fowl/profiles/{name}.yaml", text)
            ctl(booted, user, "daemon-reload")
        wait_until(lambda: booted.run(["ss", "-ltnH", "sport = :4000"]).stdout.strip(), "mailbox")
        yield booted
    finally:
        booted.stop()


@pytest.fixture(autouse=True)
def fresh_unit(machine) -> Iterator[None]:
    """Each test starts with fowld stopped and only the shipped unit plus source.conf in force."""
    yield
    for user in (ALICE, BOB):
        machine.run(["rm", "-f", f"{user.home}/.config/systemd/user/fowld.service.d/{TEST_DROP_IN}"])
        ctl(machine, user, "daemon-reload")
        ctl(machine, user, "stop", "fowld", check=False)
        ctl(machine, user, "reset-failed", "fowld", check=False)


def write_file(machine: Machine, user: User, relative: str, text: str) -> None:
    path = shlex.quote(f"{user.home}/{relative}")
    machine.run(["sh", "-c", f"mkdir -p $(dirname {path}) && cat > {path}"], user=user, input=text)


def ctl(machine: Machine, user: User, *arguments: str, check: bool = True):
    return machine.run(["systemctl", "--user", *arguments], user=user, check=check)


def show(machine: Machine, user: User, *properties: str) -> dict[str, str]:
    argv = ["show", "fowld", *(f"--property={name}" for name in properties)]
    lines = ctl(machine, user, *argv).stdout.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def fowlctl(machine: Machine, user: User, *arguments: str, check: bool = True, timeout: float = 60):
    argv = [str(venv_script("fowlctl")), *arguments]
    return machine.run(argv, user=user, env={"PYTHONPATH": str(REPO)}, check=check, timeout=timeout)


def name_has_owner(machine: Machine, user: User) -> bool:
    argv = [
        "busctl",
        "--user",
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        "s",
        "org.fowl.Fowld1",
    ]
    return machine.run(argv, user=user).stdout.strip() == "b true"


def main_pid(machine: Machine, user: User) -> str | None:
    pid = show(machine, user, "MainPID")["MainPID"]
    return None if pid == "0" else pid


def journal(machine: Machine, user: User) -> str:
    return machine.run(["journalctl", "--user", "-u", "fowld", "--no-pager", "-o", "cat"], user=user).stdout


def wait_until(probe: Callable[[], object], what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def wait_for_restart(machine: Machine, user: User, restarts: str, why: str) -> None:
    """Until systemd restarted fowld once more than ``restarts`` times, and it is up again."""

    def restarted() -> bool:
        now = show(machine, user, "NRestarts", "ActiveState")
        return now["NRestarts"] != restarts and now["ActiveState"] == "active"

    wait_until(restarted, f"the restart {why}")


def add_drop_in(machine: Machine, user: User, text: str) -> None:
    write_file(machine, user, f".config/systemd/user/fowld.service.d/{TEST_DROP_IN}", text)
    ctl(machine, user, "daemon-reload")


def test_install_under_a_user_manager(machine):
    """`fowld install` wrote the unit the manager loads, and ExecStart= is the script that ran."""
    unit = show(machine, ALICE, "FragmentPath", "UnitFileState", "LoadState")
    assert unit == {
        "FragmentPath": f"{ALICE.home}/.config/systemd/user/fowld.service",
        "UnitFileState": "disabled",
        "LoadState": "loaded",
    }
    assert f"ExecStart={venv_script('fowld').resolve()}\n" in ctl(machine, ALICE, "cat", "fowld").stdout


def test_ready_only_after_fowld_owns_its_name(machine):
    """Type=notify: `activating` until fowld says READY=1, which it says once it owns the name."""
    ctl(machine, ALICE, "start", "--no-block", "fowld")
    seen = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state = show(machine, ALICE, "ActiveState")["ActiveState"]
        owned = name_has_owner(machine, ALICE)
        seen.append((state, owned))
        if state == "active":
            break
        time.sleep(0.05)
    assert ("activating", False) in seen  # Python takes a while: systemd waited for it
    assert seen[-1] == ("active", True)


def test_status_line_in_systemctl_status(machine):
    ctl(machine, ALICE, "start", "fowld")
    status = ctl(machine, ALICE, "status", "fowld", "--no-pager").stdout
    assert 'Status: "0 sessions, 0 connected; 2 profiles"' in status
    assert "Active: active (running)" in status


@pytest.mark.slow
@slow
def test_watchdog_pings_keep_it_running_and_silence_gets_it_restarted(machine):
    add_drop_in(machine, ALICE, "[Service]\nWatchdogSec=2\nRestartSec=1\nTimeoutStopSec=5\n")
    ctl(machine, ALICE, "start", "fowld")
    first = show(machine, ALICE, "MainPID", "NRestarts", "WatchdogTimestampMonotonic")
    time.sleep(5)  # two and a half intervals: without pings systemd would have killed it
    later = show(machine, ALICE, "MainPID", "NRestarts", "WatchdogTimestampMonotonic")
    assert later["MainPID"] == first["MainPID"]
    assert later["NRestarts"] == first["NRestarts"]
    assert int(later["WatchdogTimestampMonotonic"]) > int(first["WatchdogTimestampMonotonic"])

    # A stopped event loop sends no pings: systemd aborts fowld and starts it again.
    machine.run(["kill", "-STOP", first["MainPID"]])
    wait_for_restart(machine, ALICE, first["NRestarts"], "after a watchdog timeout")
    logged = journal(machine, ALICE)
    assert "Watchdog timeout" in logged and "SIGABRT" in logged
    assert show(machine, ALICE, "MainPID")["MainPID"] != first["MainPID"]


def test_reload_rereads_profiles_on_sighup(machine):
    ctl(machine, ALICE, "start", "fowld")
    pid = show(machine, ALICE, "MainPID")["MainPID"]
    # a copy of see-web on its own port: two profiles listening on one address are an error
    extra = PROFILES["see-web"].replace("tcp:8080:", "tcp:8081:")
    write_file(machine, ALICE, ".config/fowl/profiles/extra.yaml", extra)
    write_file(machine, ALICE, ".config/fowl/profiles/broken.yaml", "bogus: 1\n")
    try:
        ctl(machine, ALICE, "reload", "fowld")  # returns once SIGHUP is sent, not once fowld re-read
        expected = 'Status: "0 sessions, 0 connected; 3 profiles (1 invalid)"'
        seen: list[str] = []

        def shown() -> bool:
            seen.append(ctl(machine, ALICE, "status", "fowld", "--no-pager").stdout)
            return expected in seen[-1]

        try:
            wait_until(shown, "the status line after the reload")
        except AssertionError:
            raise AssertionError(f"{expected} never shown; last:\n{seen[-1]}") from None
        assert show(machine, ALICE, "MainPID")["MainPID"] == pid  # the same process
        logged = journal(machine, ALICE)
        assert "Reloaded fowld.service" in logged
        # fowld's own log is in the journal too.
        assert "broken.yaml:1: unknown key 'bogus'" in logged
    finally:
        machine.run(
            [
                "rm",
                f"{ALICE.home}/.config/fowl/profiles/extra.yaml",
                f"{ALICE.home}/.config/fowl/profiles/broken.yaml",
            ]
        )


@pytest.mark.slow
@slow
def test_restarts_after_kill_9(machine):
    ctl(machine, ALICE, "start", "fowld")
    before = show(machine, ALICE, "MainPID", "NRestarts")
    machine.run(["kill", "-9", before["MainPID"]])
    wait_for_restart(machine, ALICE, before["NRestarts"], "after kill -9 (RestartSec=5)")
    assert show(machine, ALICE, "MainPID")["MainPID"] != before["MainPID"]
    assert name_has_owner(machine, ALICE)


@pytest.mark.slow
@slow
def test_start_limit_stops_restarts_and_activation(machine):
    """More than five starts within a minute: no more restarts, and activation waits in vain."""
    add_drop_in(machine, ALICE, "[Service]\nRestartSec=0.2\n")
    ctl(machine, ALICE, "start", "fowld")
    for _ in range(5):  # the first start and five restarts make six starts
        pid = wait_until(lambda: main_pid(machine, ALICE), "a main process")
        machine.run(["kill", "-9", pid])
        wait_until(lambda old=pid: main_pid(machine, ALICE) != old, "the crash to be noticed")
    wait_until(lambda: "Start request repeated too quickly" in journal(machine, ALICE), "the start limit")
    assert show(machine, ALICE, "ActiveState")["ActiveState"] == "failed"
    # The bus asks systemd, which refuses; the call waits until its own timeout.
    refused = machine.run([PING[0], "--timeout=3", *PING[1:]], user=ALICE, check=False)
    assert refused.returncode != 0
    assert "timed out" in refused.stderr
    ctl(machine, ALICE, "reset-failed", "fowld")
    ctl(machine, ALICE, "start", "fowld")
    machine.run(PING, user=ALICE)


def test_clean_stop_with_sessions(machine):
    # systemd tells ExecStopPost= how the main process ended.
    record = "echo $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS > %t/fowld-exit"
    add_drop_in(machine, ALICE, f"[Service]\nExecStopPost=/bin/sh -c '{record}'\n")
    ctl(machine, ALICE, "start", "fowld")
    invite(machine, ALICE, "share-web")
    invite(machine, ALICE, "share-web")
    assert show(machine, ALICE, "StatusText")["StatusText"].startswith("2 sessions")
    began = time.monotonic()
    ctl(machine, ALICE, "stop", "fowld")
    took = time.monotonic() - began
    # fowld exited by itself, with status 0, long before systemd's SIGKILL (TimeoutStopSec=90).
    ended = machine.run(["cat", f"{ALICE.runtime_dir}/fowld-exit"]).stdout.split()
    assert ended == ["success", "exited", "0"]
    assert took < 30


def invite(machine: Machine, user: User, profile: str) -> str:
    """Start a session from ``profile``; returns its code."""
    started = json.loads(fowlctl(machine, user, "invite", profile, "--no-wait", "--json").stdout)
    return started["code"]


def test_dbus_activation_starts_the_unit(machine):
    assert show(machine, ALICE, "ActiveState")["ActiveState"] == "inactive"
    machine.run(PING, user=ALICE)
    # The bus asked systemd, which started the unit: fowld runs supervised, with its watchdog.
    assert show(machine, ALICE, "ActiveState")["ActiveState"] == "active"
    logged = machine.run(
        ["journalctl", "--user", "--no-pager", "-o", "cat", "-g", "Activating via"], user=ALICE
    )
    assert "service name='org.fowl.Fowld1' unit='fowld.service'" in logged.stdout


def test_fowlctl_starts_fowld_through_activation(machine):
    assert show(machine, ALICE, "ActiveState")["ActiveState"] == "inactive"
    listed = fowlctl(machine, ALICE, "profiles", check=False)
    assert listed.returncode == 0, listed.stderr
    assert "share-web" in listed.stdout
    assert show(machine, ALICE, "ActiveState")["ActiveState"] == "active"


@pytest.mark.slow
@slow
def test_documented_sandbox_drop_in(machine):
    """The opt-in read-only file system: writable, and UNIX listeners, only in $XDG_RUNTIME_DIR."""
    blocks = re.findall(r"```ini\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    (sandbox,) = [block for block in blocks if "ProtectSystem=" in block]
    add_drop_in(machine, ALICE, sandbox)
    allowed, refused = f"{ALICE.runtime_dir}/web.sock", f"{ALICE.home}/web.sock"
    wants = (
        f"mailbox: {MAILBOX}\ntransit-relay: {RELAY}\nclients:\n  - name: web\n    listen: unix:path={{}}\n"
    )
    write_file(machine, ALICE, ".config/fowl/profiles/in-runtime.yaml", wants.format(allowed))
    write_file(machine, ALICE, ".config/fowl/profiles/in-home.yaml", wants.format(refused))
    try:
        ctl(machine, ALICE, "start", "fowld")
        pid = show(machine, ALICE, "MainPID")["MainPID"]
        # fowld's own view: its user and mount namespaces, as alice.
        as_fowld = [
            "nsenter",
            "-t",
            pid,
            "-U",
            "-m",
            "-r",
            "-w",
            "--preserve-credentials",
            f"-S{ALICE.uid}",
            f"-G{ALICE.uid}",
            "python3",
            "-c",
            "import sys; open(sys.argv[1], 'w')",
        ]
        for path in (f"{ALICE.home}/probe", "/tmp/probe", f"{ALICE.runtime_dir}/probe"):
            wrote = machine.run([*as_fowld, path], check=False)
            expected = path.startswith(ALICE.runtime_dir)
            assert (wrote.returncode == 0) is expected, (path, wrote.stderr)
            assert expected or "Read-only file system" in wrote.stderr

        # One session of alice's fowld offers "web", two others want it on UNIX sockets.
        for profile in ("in-runtime", "in-home"):
            code = invite(machine, ALICE, "share-web")
            fowlctl(machine, ALICE, "accept", profile, code, "--timeout", "60", timeout=90)
        status = json.loads(fowlctl(machine, ALICE, "status", "--json").stdout)["sessions"]
        clients = {s["profile"]: s["clients"][0]["state"] for s in status if s["clients"]}
        assert clients == {"in-runtime": "listening", "in-home": "failed"}
        machine.run(["test", "-S", allowed])
        reasons = [service["reason"] for s in status for service in s["services"]]
        assert any("Read-only file system" in reason and refused in reason for reason in reasons), reasons
    finally:
        machine.run(
            [
                "rm",
                "-f",
                f"{ALICE.home}/.config/fowl/profiles/in-runtime.yaml",
                f"{ALICE.home}/.config/fowl/profiles/in-home.yaml",
            ]
        )


def test_two_users_forward_bytes(machine):
    """The walk-through: enable --now on both sides, invite on one bus, accept on the other."""
    page = os.urandom(200_000).hex()
    write_file(machine, ALICE, "site/page.txt", page)
    machine.spawn(
        ["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", f"{ALICE.home}/site"],
        user=ALICE,
        name="alice-web",
    )
    for user in (ALICE, BOB):
        ctl(machine, user, "enable", "--now", "fowld")
    try:
        code = invite(machine, ALICE, "share-web")
        accepted = fowlctl(machine, BOB, "accept", "see-web", code, "--timeout", "60", timeout=90)
        assert "connected" in accepted.stdout.lower(), accepted.stdout
        fetch = (
            "import hashlib, sys, urllib.request;"
            " print(hashlib.sha256(urllib.request.urlopen(sys.argv[1]).read()).hexdigest())"
        )
        got = machine.run(["python3", "-c", fetch, "http://127.0.0.1:8080/page.txt"], user=BOB).stdout
        assert got.strip() == hashlib.sha256(page.encode()).hexdigest()
    finally:
        for user in (ALICE, BOB):
            ctl(machine, user, "disable", "--now", "fowld", check=False)


def test_uninstall_stops_and_removes(machine):
    ctl(machine, BOB, "enable", "--now", "fowld")
    removed = machine.run([str(venv_script("fowld")), "uninstall"], user=BOB, env={"PYTHONPATH": str(REPO)})
    assert "ran systemctl --user disable --now fowld" in removed.stdout
    wants = f"{BOB.home}/.config/systemd/user/default.target.wants/fowld.service"
    assert f'  Removed "{wants}".' in removed.stdout  # what systemctl said
    assert show(machine, BOB, "LoadState", "ActiveState") == {
        "LoadState": "not-found",
        "ActiveState": "inactive",
    }
    assert (
        machine.run(
            ["test", "-e", f"{BOB.home}/.config/systemd/user/default.target.wants/fowld.service"], check=False
        ).returncode
        == 1
    )
    # Nothing is activatable any more: the call fails instead of starting an unsupervised fowld.
    assert machine.run(PING, user=BOB, check=False).returncode != 0

    # The running bus finds a newly written activation file on the first call: no reload, no login.
    machine.run([str(venv_script("fowld")), "install"], user=BOB, env={"PYTHONPATH": str(REPO)})
    machine.run(PING, user=BOB)
    assert show(machine, BOB, "ActiveState")["ActiveState"] == "active"
