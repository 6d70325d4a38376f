"""fowlctl: its pure parts, `fowlctl check`, and the real thing against real fowld daemons."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fowlctl import cli, runner
from fowlctl.bus import session_bus_address
from fowlctl.errors import (
    NOT_RUNNING_MESSAGE,
    AmbiguousSession,
    BusUnreachable,
    CtlError,
    ExitCode,
    FowldNotRunning,
    SessionNotFound,
    TimedOut,
    from_remote,
)
from fowlctl.ids import id_from_path, resolve_session_id, session_number, unescape_path_element
from fowlctl.model import profile_from_dict, session_from_properties, session_json
from fowlctl.output import Output
from fowlctl.render import (
    format_bytes,
    format_duration,
    format_verifier,
    profiles_text,
    session_details,
    sessions_table,
    table,
)
from fowlctl.watch import event_from_signal, event_json, event_line, owner_event
from harness.fowld import spawn_fowld, write_profile
from harness.servers import REPO_ROOT, ProcessGroup, dbus_daemon, read_line, start_dbus_bus
from harness.wait import until

FOWLCTL = [sys.executable, "-m", "fowlctl"]
RUN_TIMEOUT = 30.0  # seconds for one fowlctl run

# --- Session ids ------------------------------------------------------------------------------

IDS = ["ssh-share-3", "ssh-share-12", "web-4", "2fa-7"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ssh-share-3", "ssh-share-3"),  # the full id
        ("3", "ssh-share-3"),  # its number
        ("12", "ssh-share-12"),
        ("w", "web-4"),  # a unique prefix
        ("ssh-share-1", "ssh-share-12"),
        ("2f", "2fa-7"),
        ("2", "2fa-7"),  # no session number 2: read as a prefix
        ("  web-4 ", "web-4"),
    ],
)
def test_resolve_session_id(query: str, expected: str) -> None:
    assert resolve_session_id(query, IDS) == expected


def test_resolve_session_id_prefers_the_exact_id_over_longer_ones() -> None:
    assert resolve_session_id("a-1", ["a-1", "a-12"]) == "a-1"


def test_ambiguous_prefix_names_the_candidates() -> None:
    with pytest.raises(AmbiguousSession, match="ssh-share-12, ssh-share-3"):
        resolve_session_id("ssh", IDS)


def test_unknown_id_lists_what_exists() -> None:
    with pytest.raises(SessionNotFound, match=r"no session matches 'nope' \(2fa-7, ssh-share-12"):
        resolve_session_id("nope", IDS)
    with pytest.raises(SessionNotFound, match="there are no sessions"):
        resolve_session_id("1", [])
    with pytest.raises(SessionNotFound, match="cannot be empty"):
        resolve_session_id(" ", IDS)


def test_session_number() -> None:
    assert session_number("ssh-share-3") == 3
    assert session_number("web") is None
    assert session_number("web-x") is None
    # a query of thousands of digits (a fuzzer's) is no session number, and no crash
    assert session_number("web-" + "7" * 5000) is None
    with pytest.raises(SessionNotFound, match="no session matches"):
        resolve_session_id("7" * 4301, ["web-1"])


def test_object_paths_unescape_to_ids() -> None:
    assert id_from_path("/org/fowl/Fowld1/session/ssh_2dshare_2d3") == "ssh-share-3"
    assert id_from_path("/org/fowl/Fowld1/session/a_2eb_5fc_2d1") == "a.b_c-1"
    assert unescape_path_element("caf_c3_a9") == "café"
    assert id_from_path("/org/fowl/Fowld1") == "/org/fowl/Fowld1"


# --- Finding the bus, and errors ---------------------------------------------------------------


def test_bus_address_explicit_then_environment() -> None:
    env = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/a"}
    assert session_bus_address(env, "unix:path=/run/b") == "unix:path=/run/b"
    assert session_bus_address(env) == "unix:path=/run/a"


def test_bus_address_falls_back_to_the_runtime_directory_socket(tmp_path: Path) -> None:
    with pytest.raises(BusUnreachable, match="DBUS_SESSION_BUS_ADDRESS is not set"):
        session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)})
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "bus"))
        assert session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) == f"unix:path={tmp_path / 'bus'}"


def test_remote_errors_become_messages_and_exit_codes() -> None:
    e = from_remote("org.fowl.Fowld1.Error.ProfileNotFound", "no profile named 'x'")
    assert (type(e), e.message, e.name, e.exit_code) == (
        CtlError,
        "no profile named 'x'",
        "org.fowl.Fowld1.Error.ProfileNotFound",
        ExitCode.FAILED,
    )
    assert isinstance(from_remote("org.freedesktop.DBus.Error.ServiceUnknown", "x"), FowldNotRunning)
    assert from_remote("org.freedesktop.DBus.Error.ServiceUnknown", "").exit_code == ExitCode.UNAVAILABLE
    gone = from_remote("org.freedesktop.DBus.Error.UnknownObject", "", what="session web-4")
    assert isinstance(gone, SessionNotFound) and gone.message == "session web-4 no longer exists"
    slow = from_remote("org.freedesktop.DBus.Error.NoReply", "did not reply")
    assert isinstance(slow, TimedOut) and slow.exit_code == ExitCode.TIMEOUT
    assert from_remote("org.example.Odd", "").message == "org.example.Odd"  # no message: show the name


def test_json_errors_carry_name_message_and_exit_code() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = runner.report_error(FowldNotRunning(), Output(True, stdout, stderr))
    assert code == 3
    assert json.loads(stdout.getvalue()) == {
        "error": {"name": "org.fowl.fowlctl.Error.NotRunning", "message": NOT_RUNNING_MESSAGE, "exit_code": 3}
    }
    assert stderr.getvalue() == f"fowlctl: {NOT_RUNNING_MESSAGE}\n"


# --- Rendering --------------------------------------------------------------------------------


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 2**20, 3 * 2**40, 2**60)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 TiB",
        "1024.0 PiB",
    ]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (-1, 42, 300, 7500, 3 * 86400 + 4 * 3600)] == [
        "0 s",
        "42 s",
        "5 min",
        "2 h 5 min",
        "3 d 4 h",
    ]


def test_format_verifier_groups_four_hex_digits() -> None:
    assert format_verifier("0123456789abcdef01") == "0123 4567 89ab cdef 01"


def test_table_aligns_columns() -> None:
    assert table(("A", "BB"), [("long", "x"), ("s", "yy")]).splitlines() == [
        "A     BB",
        "long  x",
        "s     yy",
    ]


PROPS = {
    "Id": "web-4",
    "Profile": "web",
    "State": "connected",
    "StateReason": "",
    "Code": "4-purple-sausages",
    "Verifier": "ab" * 32,
    "PeerConnected": True,
    "Path": "direct",
    "Hint": "tcp:127.0.0.1:4242",
    "Generation": 1,
    "MailboxUrl": "ws://127.0.0.1:4000/v1",
    "MailboxState": "connected",
    "Services": [["web", "tcp:127.0.0.1:8000", "ready", ""]],
    "Clients": [["ssh", "tcp:0:interface=127.0.0.1", 40022, "listening"]],
    "BytesIn": 2048,
    "BytesOut": 100,
    "OpenConnections": 1,
    "TotalConnections": 5,
    "CreatedUSec": 1_700_000_000_000_000,
    "Restarts": 0,
}
SESSION_KEYS = {
    "connections",
    "id",
    "object_path",
    "profile",
    "state",
    "reason",
    "code",
    "verifier",
    "peer_connected",
    "path",
    "hint",
    "generation",
    "mailbox_url",
    "mailbox_state",
    "services",
    "clients",
    "bytes_in",
    "bytes_out",
    "open_connections",
    "total_connections",
    "created_usec",
    "restarts",
}


def test_session_json_has_the_documented_keys() -> None:
    data = session_json(session_from_properties("/org/fowl/Fowld1/session/web_2d4", PROPS))
    assert set(data) == SESSION_KEYS
    assert data["clients"] == [
        {"name": "ssh", "listen": "tcp:0:interface=127.0.0.1", "port": 40022, "state": "listening"}
    ]
    assert data["services"][0]["state"] == "ready"
    assert (data["bytes_in"], data["bytes_out"], data["peer_connected"]) == (2048, 100, True)


def test_settled_means_connected_with_every_forward_answered() -> None:
    assert session_from_properties("/p", PROPS).settled
    requesting = {**PROPS, "Services": [["web", "tcp:127.0.0.1:8000", "requesting", ""]]}
    assert not session_from_properties("/p", requesting).settled
    assert not session_from_properties("/p", {**PROPS, "State": "connecting"}).settled
    failed = {**PROPS, "Clients": [["ssh", "tcp:2222", 0, "failed"]]}
    assert session_from_properties("/p", failed).settled  # a final answer, even if a bad one


def test_sessions_table_and_details() -> None:
    waiting = session_from_properties(
        "/p2", {**PROPS, "Id": "web-5", "State": "waiting", "PeerConnected": False, "Verifier": ""}
    )
    connected = session_from_properties("/p1", PROPS)
    lines = sessions_table([waiting, connected]).splitlines()
    assert lines[0].split() == ["ID", "PROFILE", "STATE", "PEER", "CONNS(OPEN/ALL)", "BYTES(IN/OUT)"]
    assert lines[1].split()[:5] == ["web-4", "web", "connected", "direct", "1/5"]
    assert lines[1].endswith("2.0 KiB / 100 B")
    assert lines[2].split()[:4] == ["web-5", "web", "waiting", "-"]
    assert "No sessions" in sessions_table([])

    details = session_details(connected, now=1_700_000_042.0)
    assert details.startswith("web-4 (profile web)\n")
    assert "Verifier:    abab abab" in details
    assert "connected via direct (tcp:127.0.0.1:4242), generation 1" in details
    assert "offers web -> tcp:127.0.0.1:8000  [ready]" in details
    assert "wants  ssh <- tcp:0:interface=127.0.0.1 (port 40022)  [listening]" in details
    assert "(42 s ago)" in details
    failed = session_from_properties("/p", {**PROPS, "State": "failed", "StateReason": "bad code"})
    assert "State:       failed (bad code)" in session_details(failed, now=0)
    troubled = {
        **PROPS,
        "Clients": [["ssh", "tcp:2222", 0, "failed"]],
        "ClientReasons": [["ssh", "cannot listen on tcp:2222: Address already in use"]],
        "RefusedConnections": 3,
        "LostConnections": 1,
    }
    details = session_details(session_from_properties("/p", troubled), now=0)
    assert "wants  ssh <- tcp:2222  [failed (cannot listen on tcp:2222: Address already in use)]" in details
    assert "1 open, 5 in all, 3 refused, 1 lost" in details


def test_profiles_text_shows_profiles_then_errors() -> None:
    p = profile_from_dict(
        {
            "name": "ssh-share",
            "description": "Let a helper in",
            "path": "/x/ssh-share.yaml",
            "services": ["ssh -> tcp:localhost:22"],
            "clients": [],
            "autostart": False,
            "has_code": False,
            "restart": "never",
        }
    )
    text = profiles_text([p], [("bad.yaml", "bad.yaml:3: unknown key 'x'")])
    assert "ssh-share  invite/accept  never    Let a helper in" in text
    assert "  offers ssh -> tcp:localhost:22" in text
    assert text.endswith("Profiles with errors (not loaded):\n  bad.yaml:3: unknown key 'x'")
    assert "No valid profiles" in profiles_text([], [])


# --- Watch events -----------------------------------------------------------------------------

SESSION_IFACE = "org.fowl.Fowld1.Session"
OM = "org.freedesktop.DBus.ObjectManager"
PATH = "/org/fowl/Fowld1/session/web_2d4"
NOW = 1_700_000_000.25


def test_watch_events_from_signals() -> None:
    names: dict[str, str] = {}
    added = event_from_signal(
        OM, "InterfacesAdded", "/org/fowl/Fowld1", [PATH, {SESSION_IFACE: PROPS}], names, NOW
    )
    assert (added.event, added.session, added.details) == ("session-added", "web-4", {"profile": "web"})
    assert names == {PATH: "web-4"}
    state = event_from_signal(SESSION_IFACE, "StateChanged", PATH, ["failed", "peer gone"], names, NOW)
    assert event_json(state) == {
        "time": "2023-11-14T22:13:20.250Z",
        "event": "state-changed",
        "session": "web-4",
        "state": "failed",
        "reason": "peer gone",
    }
    assert event_line(state).endswith("  web-4  state failed (peer gone)")
    assert re.match(r"^\d\d:\d\d:\d\d\.250  ", event_line(state))
    opened = event_from_signal(SESSION_IFACE, "ConnectionOpened", PATH, [7, "web", "incoming"], names, NOW)
    assert event_line(opened).endswith("web-4  connection 7 opened: web (incoming)")
    body = [7, "web", "incoming", 2048, 10, ""]
    closed = event_from_signal(SESSION_IFACE, "ConnectionClosed", PATH, body, names, NOW)
    assert event_line(closed).endswith("connection 7 closed: web (incoming), 2.0 KiB in, 10 B out")
    assert event_json(closed)["bytes_in"] == 2048
    broken = event_from_signal(SESSION_IFACE, "ConnectionClosed", PATH, [*body[:5], "reset"], names, NOW)
    assert "connection 7 failed: reset" in event_line(broken)
    body = ["web", "too many streams"]
    refused = event_from_signal(SESSION_IFACE, "ConnectionRefused", PATH, body, names, NOW)
    assert event_line(refused).endswith("web-4  connection refused: web: too many streams")
    assert event_json(refused)["reason"] == "too many streams"
    removed = event_from_signal(
        OM, "InterfacesRemoved", "/org/fowl/Fowld1", [PATH, [SESSION_IFACE]], names, NOW
    )
    assert (removed.event, removed.session, names) == ("session-removed", "web-4", {})
    # Unknown sessions are named from their path; other signals are not shown.
    later = event_from_signal(SESSION_IFACE, "StateChanged", PATH, ["closed", ""], names, NOW)
    assert later.session == "web-4"
    changed = ["org.fowl.Fowld1.Session", {"BytesIn": 1}, []]
    props = "org.freedesktop.DBus.Properties"
    assert event_from_signal(props, "PropertiesChanged", PATH, changed, names, NOW) is None
    assert event_line(owner_event("", NOW)).endswith("  -  fowld stopped")
    assert event_json(owner_event(":1.5", NOW))["event"] == "fowld-started"


# --- Command line -----------------------------------------------------------------------------


def test_options_work_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["--json", "list"]).json
    assert parser.parse_args(["list", "--json"]).json
    assert not parser.parse_args(["list"]).json
    assert parser.parse_args(["--bus", "unix:path=/a", "status", "3"]).bus == "unix:path=/a"
    args = parser.parse_args(["invite", "web", "--timeout", "2.5", "--no-wait"])
    assert (args.profile, args.timeout, args.no_wait) == ("web", 2.5, True)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["invite"],
        ["accept", "web"],
        ["close"],
        ["invite", "web", "--timeout", "0"],
        ["check"],
        ["frobnicate"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == ExitCode.USAGE
    assert "usage: fowlctl" in capsys.readouterr().err


def test_every_command_help_teaches_with_examples() -> None:
    for name in cli.COMMANDS:
        result = subprocess.run(
            [*FOWLCTL, name, "--help"], capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert result.returncode == 0, result.stderr
        assert f"usage: fowlctl {name}" in result.stdout
        assert re.search(rf"^  fowlctl {name}\b", result.stdout, re.M), f"{name} --help has no example"


def _fowlctl(
    *args: str, env: dict | None = None, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FOWLCTL, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


# --- fowlctl check ----------------------------------------------------------------------------


def test_check_accepts_the_example_profiles() -> None:
    files = sorted(str(p) for p in (REPO_ROOT / "fowld" / "data" / "examples").glob("*.yaml"))
    assert files
    result = _fowlctl("check", *files)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for f in files:
        assert f"{f}: ok (profile {Path(f).stem}: " in result.stdout


def test_check_reports_file_and_line_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("services:\n  - name: web\n    connect: 8000\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nservices:\n  - name: web\n    conect: 8000\n")
    missing = tmp_path / "missing.yaml"
    result = _fowlctl("check", str(good), str(bad), str(missing))
    assert result.returncode == 1
    assert result.stdout == f"{good}: ok (profile good: offers web -> tcp:host=localhost:port=8000)\n"
    errors = result.stderr.splitlines()
    assert errors[0] == f"{bad}:4: services[0]: unknown key 'conect' (did you mean 'connect'?)"
    assert errors[1].startswith(f"{missing}: cannot read: ")

    as_json = json.loads(_fowlctl("check", "--json", str(good), str(bad)).stdout)
    assert as_json["ok"] is False
    assert [(f["file"], f["ok"], f["profile"]) for f in as_json["files"]] == [
        (str(good), True, "good"),
        (str(bad), False, None),
    ]
    assert as_json["files"][1]["error"].startswith(f"{bad}:4: ")


def test_check_refuses_what_fowld_would_skip(tmp_path: Path) -> None:
    # one loader, one verdict: fowld reads only NAME.yaml, so a .yml file fails the check
    old = tmp_path / "old.yml"
    old.write_text("services:\n  - name: web\n    connect: 8000\n")
    result = _fowlctl("check", str(old))
    assert result.returncode == 1
    assert result.stderr == f"{old}: ignored: profile files must end in .yaml\n"


def test_check_warns_about_a_readable_fixed_code(tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text("code: 7-some-words\nclients:\n  - name: web\n")
    shared.chmod(0o644)
    result = _fowlctl("check", str(shared))
    assert result.returncode == 0  # a warning, not an error
    assert f"warning: {shared}: other users can read its fixed code" in result.stderr


# --- Without fowld ----------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")}
    env.update(extra)
    return env


def test_no_session_bus_exits_3(tmp_path: Path) -> None:
    result = _fowlctl("list", env=_clean_env(XDG_RUNTIME_DIR=str(tmp_path)))
    assert result.returncode == ExitCode.UNAVAILABLE
    assert "DBUS_SESSION_BUS_ADDRESS is not set" in result.stderr
    result = _fowlctl("list", env=_clean_env(DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/none"))
    assert result.returncode == ExitCode.UNAVAILABLE
    expected = f"cannot connect to the session bus at unix:path={tmp_path}/none: No such file or directory"
    assert result.stderr == f"fowlctl: {expected}\n"


def test_fowld_not_running_exits_3(dbus_bus) -> None:
    env = _clean_env(DBUS_SESSION_BUS_ADDRESS=dbus_bus.address)
    for args in (["list"], ["status", "3"], ["invite", "web"], ["watch"]):
        result = _fowlctl(*args, env=env)
        assert result.returncode == ExitCode.UNAVAILABLE, args
        assert result.stderr == f"fowlctl: {NOT_RUNNING_MESSAGE}\n"
    result = _fowlctl("--bus", dbus_bus.address, "profiles", "--json", env=_clean_env())
    assert result.returncode == ExitCode.UNAVAILABLE
    assert json.loads(result.stdout)["error"]["name"] == "org.fowl.fowlctl.Error.NotRunning"


# --- Against real fowld daemons -----------------------------------------------------------------
#
# Two fowlds, "alice" and "bob", each on a private bus with its own profiles, meet on the
# run's mailbox and transit relay. They are shared by the tests below; every test closes
# the sessions it starts.

READY_TIMEOUT = 20.0  # seconds for a fowld to own its bus name
STEP_TIMEOUT = 30.0  # seconds for one step between the two daemons


@dataclass
class Side:
    name: str
    env: dict
    profiles: Path
    daemon: subprocess.Popen

    def ctl(self, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess:
        return _fowlctl(*args, env=self.env, timeout=timeout)

    def ctl_json(self, *args: str) -> dict:
        result = self.ctl(*args, "--json")
        assert result.returncode == 0, f"fowlctl {args} -> {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)

    def spawn_ctl(self, group: ProcessGroup, *args: str) -> subprocess.Popen:
        return group.spawn(
            [*FOWLCTL, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, name="fowlctl"
        )

    def sessions(self) -> list[dict]:
        return self.ctl_json("list")["sessions"]

    def write_profile(self, name: str, text: str) -> Path:
        return write_profile(self.profiles, name, text)


def _start_side(
    group: ProcessGroup,
    name: str,
    base: Path,
    profile_text: str | None = None,
    profile: str = "",
    fowld_args: tuple[str, ...] = (),
    settings: str | None = None,
) -> Side:
    """A private bus and a fowld on it, with one profile (or none), ``fowld_args`` and fowld.yaml."""
    if dbus_daemon() is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus)")
    profiles = base / "config" / "fowl" / "profiles"
    profiles.mkdir(parents=True)
    if settings is not None:
        (profiles.parent / "fowld.yaml").write_text(settings)
    bus = start_dbus_bus(group, base)
    env = _clean_env(DBUS_SESSION_BUS_ADDRESS=bus.address, XDG_CONFIG_HOME=str(base / "config"))
    # Relay only: the two fowlds then never leave loopback for a direct path.
    daemon = spawn_fowld(group, "--relay-only", *fowld_args, env=env, name=f"fowld-{name}")
    side = Side(name, env, profiles, daemon)
    if profile_text is not None:
        side.write_profile(profile, profile_text)

    def ready() -> bool:
        if daemon.poll() is not None:
            raise AssertionError(f"fowld {name} exited: {group.describe(daemon)}")
        return side.ctl("profiles", timeout=READY_TIMEOUT).returncode == 0

    until(ready, f"fowld {name} on its bus", READY_TIMEOUT, 0.1)
    return side


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[int]:
    """A TCP echo server on loopback (the service alice offers); yields its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, mailbox, transit_relay, echo_server) -> Iterator[tuple[Side, Side]]:
    group = ProcessGroup(tmp_path_factory.mktemp("fowlctl-daemons"))
    common = f"mailbox: {mailbox.url}\ntransit-relay: {transit_relay.hint}\nrestart: never\n"
    alice_profile = f"{common}services:\n  - name: echo\n    connect: tcp:127.0.0.1:{echo_server}\n"
    bob_profile = f"{common}clients:\n  - name: echo\n    listen: tcp:0:interface=127.0.0.1\n"
    # Short directories: a UNIX socket path must stay under about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="fowlctl-") as directory:
        try:
            alice = _start_side(group, "alice", Path(directory, "a"), alice_profile, "share")
            bob = _start_side(group, "bob", Path(directory, "b"), bob_profile, "join")
            yield alice, bob
        finally:
            group.stop_all()


def echo_through(port: int, size: int) -> bytes:
    """Send ``size`` random bytes to the echo service behind ``port`` and check they come back."""
    payload = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, "the tunnel closed early"
            got += chunk
    assert got == payload
    return payload


def _json_line(process: subprocess.Popen, timeout: float = STEP_TIMEOUT) -> dict:
    return json.loads(read_line(process.stdout, timeout))


def _close_all(*sides: Side) -> None:
    for side in sides:
        for s in side.sessions():
            side.ctl("close", s["id"])
        until(lambda side=side: not side.sessions(), f"{side.name} without sessions", STEP_TIMEOUT, 0.1)


def test_invite_accept_forward_list_status_ping_close(pair, processes, echo_server) -> None:
    alice, bob = pair
    watch = alice.spawn_ctl(processes, "watch", "--json")
    assert b"Watching" in read_line(watch.stderr, STEP_TIMEOUT)  # subscribed: nothing is missed from here

    invite = alice.spawn_ctl(processes, "invite", "share", "--json", "--timeout", str(STEP_TIMEOUT))
    first = _json_line(invite)
    assert first["event"] == "code" and re.fullmatch(r"\d+-\w+-\w+", first["code"])
    session_id = first["session"]
    assert session_id.startswith("share-")

    accepted = bob.ctl("accept", "join", first["code"], "--json")
    assert accepted.returncode == 0, accepted.stderr
    joining, bob_connected = (json.loads(line) for line in accepted.stdout.splitlines())
    assert joining["event"] == "joining"
    assert bob_connected["event"] == "connected"
    assert invite.wait(STEP_TIMEOUT) == 0
    alice_connected = _json_line(invite)
    assert alice_connected["event"] == "connected"
    a, b = alice_connected["session"], bob_connected["session"]
    assert a["id"] == session_id and a["state"] == b["state"] == "connected"
    assert re.fullmatch(r"[0-9a-f]{64}", a["verifier"]) and a["verifier"] == b["verifier"]
    (service,) = a["services"]
    assert (service["name"], service["state"], service["reason"]) == ("echo", "ready", "")
    assert service["connect"].endswith(str(echo_server))
    (client,) = b["clients"]
    assert client["state"] == "listening" and client["port"] > 0

    # Real bytes through the tunnel, then the counters that show them.
    payload = echo_through(client["port"], 5000)

    def counted() -> dict | None:
        (s,) = bob.sessions()
        done = s["bytes_in"] == s["bytes_out"] == len(payload) and s["open_connections"] == 0
        return s if done and s["total_connections"] == 1 else None

    bob_session = until(counted, "bob's byte counters", STEP_TIMEOUT, 0.1)

    # Human output: list and status, addressed by number and by prefix.
    listed = bob.ctl("list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith(bob_session["id"]))
    assert row.split()[1:5] == ["join", "connected", bob_session["path"], "0/1"]
    number = bob_session["id"].rsplit("-", 1)[1]
    status = bob.ctl("status", number)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{bob_session['id']} (profile join)\n")
    assert "Bytes:       4.9 KiB in, 4.9 KiB out" in status.stdout
    assert bob.ctl_json("status", "jo")["id"] == bob_session["id"]
    assert len(alice.ctl_json("status")["sessions"]) == 1

    pong = alice.ctl_json("ping", session_id)
    assert pong["session"] == session_id and 0 < pong["seconds"] < STEP_TIMEOUT

    closed = bob.ctl("close", number)
    assert (closed.returncode, closed.stdout) == (0, f"Closed session {bob_session['id']}.\n")
    until(lambda: not bob.sessions(), "bob's session removed", STEP_TIMEOUT, 0.1)
    _close_all(alice)

    watch.send_signal(signal.SIGINT)
    assert watch.wait(STEP_TIMEOUT) == 0
    events = [json.loads(line) for line in watch.stdout.read().decode().splitlines()]
    mine = [(e["event"], e.get("state")) for e in events if e["session"] == session_id]
    assert mine[0] == ("session-added", None) and mine[-1] == ("session-removed", None)
    assert ("state-changed", "connected") in mine
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in events)


def test_named_errors_from_fowld(pair) -> None:
    alice, _ = pair
    result = alice.ctl("invite", "no-such-profile", "--json")
    assert result.returncode == ExitCode.FAILED
    error = json.loads(result.stdout)["error"]
    assert error["name"] == "org.fowl.Fowld1.Error.ProfileNotFound"
    assert result.stderr == f"fowlctl: {error['message']}\n" and "no-such-profile" in error["message"]
    result = alice.ctl("start", "share")  # no fixed code in the profile
    assert result.returncode == ExitCode.FAILED
    assert result.stderr.startswith("fowlctl: ") and "org.fowl" not in result.stderr
    result = alice.ctl("close", "999")
    assert result.returncode == ExitCode.FAILED
    assert result.stderr.startswith("fowlctl: no session matches '999'")


def test_invite_times_out_and_closes_its_session(pair) -> None:
    alice, _ = pair
    result = alice.ctl("invite", "share", "--timeout", "1")
    assert result.returncode == ExitCode.TIMEOUT
    assert re.search(r"fowlctl: no peer connected within 1 s; closed session share-\d+\n$", result.stderr)
    until(lambda: not alice.sessions(), "the timed-out session removed", STEP_TIMEOUT, 0.1)


def test_no_wait_and_interrupted_wait_leave_the_session_running(pair, processes) -> None:
    alice, _ = pair
    started = alice.ctl_json("invite", "share", "--no-wait")
    assert started["event"] == "code"
    waiting = alice.spawn_ctl(processes, "invite", "share")
    assert b"Waiting for the peer" in read_line(waiting.stderr, STEP_TIMEOUT)
    waiting.send_signal(signal.SIGINT)
    assert waiting.wait(STEP_TIMEOUT) == ExitCode.INTERRUPTED
    assert b"keeps running in fowld" in waiting.stderr.read()
    states = {s["id"]: (s["state"], s["code"]) for s in alice.sessions()}
    assert states[started["session"]] == ("waiting", started["code"])  # to be passed on, until used
    assert len(states) == 2
    _close_all(alice)


@pytest.mark.parametrize("json_mode", [False, True])
def test_watch_stopped_by_sigterm_exits_0_quietly(pair, processes, json_mode) -> None:
    # what an applet does to the watcher it started
    alice, _ = pair
    watch = alice.spawn_ctl(processes, "watch", *(["--json"] if json_mode else []))
    assert b"Watching" in read_line(watch.stderr, STEP_TIMEOUT)
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(STEP_TIMEOUT) == 0
    assert watch.stderr.read() == b""
    assert watch.stdout.read() == b""  # no error object, no traceback: nothing happened


def test_profiles_and_reload(pair) -> None:
    alice, _ = pair
    listed = alice.ctl_json("profiles")
    assert [p["name"] for p in listed["profiles"]] == ["share"] and listed["errors"] == []
    extra = alice.write_profile("extra", "clients:\n  - name: web\n")
    broken = alice.write_profile("broken", "clients:\n  - nam: web\n")
    try:
        reloaded = alice.ctl_json("reload")
        assert (reloaded["added"], reloaded["changed"], reloaded["removed"]) == (["extra"], [], [])
        assert [e["file"] for e in reloaded["errors"]] == [str(broken)]
        assert reloaded["errors"][0]["message"].startswith(f"{broken}:2: ")
        human = alice.ctl("profiles")
        assert "extra" in human.stdout and f"{broken}:2: " in human.stdout
    finally:
        extra.unlink()
        broken.unlink()
        alice.ctl("reload")
    assert [p["name"] for p in alice.ctl_json("profiles")["profiles"]] == ["share"]


def test_demo_runs_to_success() -> None:
    if dbus_daemon() is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus)")
    result = subprocess.run(
        [sys.executable, "-m", "harness.demo"],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical to the page alice serves" in result.stdout
    assert re.search(r"Done in \d+\.\d s", result.stdout)
