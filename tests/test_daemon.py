"""fowld as a D-Bus service: real daemons on private buses, real mailbox, real D-Bus clients.

Each daemon is a ``fowld`` process with its own bus and its own profiles
directory. Tests drive them with busctl and gdbus, watch signals with
``gdbus monitor`` and forward real bytes through the sessions they create.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fowld.daemon.errors import SessionNotFound
from fowld.daemon.profiles import RestartPolicy
from fowld.daemon.registry import SessionRegistry
from fowld.daemon.supervisor import Mode, should_restart
from fowld.dbus.names import escape_path_element
from harness.fowld import daemon_env, spawn_fowld, write_profile
from harness.servers import ProcessGroup, free_port
from harness.wait import datagrams, until

BUS_NAME = "org.fowl.Fowld1"
MANAGER_PATH = "/org/fowl/Fowld1"
MANAGER = "org.fowl.Fowld1.Manager"
SESSION = "org.fowl.Fowld1.Session"
ERROR = "org.fowl.Fowld1.Error."
SESSION_CHANGED = r"PropertiesChanged \('org\.fowl\.Fowld1\.Session', \{[^}]*"  # gdbus monitor's rendering
CALL_TIMEOUT = 20.0  # seconds for one busctl/gdbus call (Invite may wait for the mailbox)
START_TIMEOUT = 10.0  # seconds for fowld to own its bus name
PAIR_TIMEOUT = 20.0  # seconds for two daemons to connect through the local mailbox
PEER_LOST_TIMEOUT = 2.0  # seconds before a supervised session gives up on a vanished peer

pytestmark = pytest.mark.skipif(
    shutil.which("busctl") is None or shutil.which("gdbus") is None,
    reason="busctl (systemd) and gdbus (libglib2.0-bin) are needed",
)


# --- talking to a daemon ------------------------------------------------------------------------


def busctl(bus: str, *args: str, timeout: float = CALL_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["busctl", f"--address={bus}", *args], capture_output=True, text=True, timeout=timeout
    )


def _unwrap(value: Any) -> Any:
    """busctl's JSON gives variants as {"type", "data"}: keep the data."""
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        return _unwrap(value["data"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def call(bus: str, path: str, interface: str, method: str, *signature_and_args: str) -> list:
    """Call a method with busctl; returns the reply's values."""
    result = busctl(bus, "--json=short", "call", BUS_NAME, path, interface, method, *signature_and_args)
    assert result.returncode == 0, f"{method} failed: {result.stderr.strip()}"
    return _unwrap(json.loads(result.stdout)["data"]) if result.stdout.strip() else []


def properties(bus: str, path: str, interface: str = SESSION) -> dict:
    return call(bus, path, "org.freedesktop.DBus.Properties", "GetAll", "s", interface)[0]


def try_properties(bus: str, path: str) -> dict | None:
    """A session's properties, or None while the object does not exist."""
    result = busctl(
        bus, "--json=short", "call", BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll", "s", SESSION
    )
    return _unwrap(json.loads(result.stdout)["data"])[0] if result.returncode == 0 else None


def gdbus_error(bus: str, path: str, method: str, *args: str) -> tuple[str, str]:
    """Call ``method`` (INTERFACE.MEMBER) with gdbus, expecting a D-Bus error: (name, message)."""
    result = subprocess.run(
        [
            "gdbus",
            "call",
            "--address",
            bus,
            "--dest",
            BUS_NAME,
            "--object-path",
            path,
            "--method",
            method,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT,
    )
    assert result.returncode != 0, f"{method} {args} succeeded: {result.stdout}"
    m = re.search(r"GDBus\.Error:([\w.]+): (.*)", result.stderr)
    assert m, f"no D-Bus error in {result.stderr!r}"
    return m.group(1), m.group(2)


@dataclass
class Fowld:
    process: subprocess.Popen
    bus: str
    config: Path  # XDG_CONFIG_HOME

    @property
    def profiles(self) -> Path:
        return self.config / "fowl" / "profiles"

    def call(self, method: str, *signature_and_args: str) -> list:
        return call(self.bus, MANAGER_PATH, MANAGER, method, *signature_and_args)

    def manager(self) -> dict:
        return properties(self.bus, MANAGER_PATH, MANAGER)

    def sessions(self) -> dict[str, dict]:
        """Every session object's properties, by profile name (GetManagedObjects)."""
        objects = call(self.bus, MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")[0]
        return {props[SESSION]["Profile"]: dict(props[SESSION], path=path) for path, props in objects.items()}


def spawn_daemon(
    processes: ProcessGroup, bus: str, config: Path, args: tuple[str, ...] = (), **env: str
) -> subprocess.Popen:
    """fowld's D-Bus daemon with a short --peer-lost-timeout, on ``bus`` with profiles under ``config``."""
    options = ("-v", "--peer-lost-timeout", str(PEER_LOST_TIMEOUT), *args)
    return spawn_fowld(processes, *options, env=daemon_env(bus, config, **env))


def start_fowld(
    processes: ProcessGroup, bus: str, config: Path, args: tuple[str, ...] = (), **env: str
) -> Fowld:
    """Start fowld and wait until it owns its bus name."""
    process = spawn_daemon(processes, bus, config, args, **env)

    def owned() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"fowld exited with {process.returncode}:\n{processes.describe(process)}")
        return busctl(bus, "status", BUS_NAME, timeout=5).returncode == 0

    until(owned, "fowld to own its bus name", START_TIMEOUT, 0.1)
    return Fowld(process, bus, config)


def monitor(processes: ProcessGroup, bus: str) -> Callable[[], str]:
    """Watch every signal fowld sends on ``bus``; returns a function reading what was seen."""
    process = processes.spawn(
        ["stdbuf", "-oL", "gdbus", "monitor", "--address", bus, "--dest", BUS_NAME], name="gdbus-monitor"
    )
    until(lambda: "is owned by" in processes.output(process)[0], "gdbus monitor to start", 5, 0.1)
    return lambda: processes.output(process)[0]


# --- real bytes through a session ---------------------------------------------------------------


GREETING = b"hello, peer\n"


class BlobServer:
    """A local TCP service: reads a 4-byte request, answers, closes.

    "GET\n" gets ``blob``; anything else gets ``GREETING``.
    """

    def __init__(self, blob: bytes):
        self.blob = blob
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(PAIR_TIMEOUT)
                request = b""
                while len(request) < 4 and (chunk := conn.recv(4 - len(request))):
                    request += chunk
                self.requests.append(request)
                conn.sendall(self.blob if request == b"GET\n" else GREETING)

    def close(self) -> None:
        if self._sock.fileno() == -1:
            return  # closed already (a test took the service away)
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


def fetch(port: int, request: bytes, size: int | None = None) -> bytes:
    """Connect to a client listener, send ``request``, read until EOF (or ``size`` bytes)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=PAIR_TIMEOUT) as sock:
        sock.sendall(request)
        while (size is None or len(received) < size) and (chunk := sock.recv(65536)):
            received += chunk
    return bytes(received)


# --- pairing two daemons ------------------------------------------------------------------------


def share_profile(mailbox_url: str, relay: str, service_port: int, extra: str = "") -> str:
    return (
        f"description: offer the blob service\nmailbox: {mailbox_url}\ntransit-relay: {relay}\n"
        f"services:\n  - name: blob\n    connect: tcp:127.0.0.1:{service_port}\n{extra}"
    )


def join_profile(mailbox_url: str, relay: str, listen_port: int, extra: str = "") -> str:
    return (
        f"description: reach the peer's blob service\nmailbox: {mailbox_url}\ntransit-relay: {relay}\n"
        f"clients:\n  - name: blob\n    listen: tcp:{listen_port}:interface=127.0.0.1\n{extra}"
    )


@dataclass
class Pair:
    a: Fowld  # offers the blob service
    b: Fowld  # wants it, listening on listen_port
    a_path: str
    b_path: str
    code: str
    listen_port: int


def invite_and_accept(a: Fowld, b: Fowld, listen_port: int) -> Pair:
    """Invite on ``a`` (busctl), accept on ``b`` (gdbus), wait until both are connected."""
    a_path, code = a.call("Invite", "s", "share")
    accepted = subprocess.run(
        ["gdbus", "call", "--address", b.bus, "--dest", BUS_NAME, "--object-path", MANAGER_PATH,
         "--method", f"{MANAGER}.Accept", "join", code],
        capture_output=True, text=True, timeout=CALL_TIMEOUT, check=True,
    )  # fmt: skip
    b_path = re.search(r"objectpath '([^']+)'", accepted.stdout).group(1)
    for fowld, path in ((a, a_path), (b, b_path)):
        until(
            lambda f=fowld, p=path: properties(f.bus, p)["State"] == "connected",
            f"{path} to connect",
            PAIR_TIMEOUT,
            0.1,
        )
    return Pair(a, b, a_path, b_path, code, listen_port)


class PairSetup:
    """Two daemons on two buses: A has a "share" profile, B a "join" profile for it."""

    def __init__(
        self, processes: ProcessGroup, buses: tuple[str, str], mailbox_url: str, relay: str, root: Path
    ):
        self.blob = secrets.token_bytes(3 * 1024 * 1024 + 17)
        self.server = BlobServer(self.blob)
        self.listen_port = free_port()
        self.mailbox_url = mailbox_url
        self._processes = processes
        self._buses = buses
        self._configs = (root / "a", root / "b")
        a_profiles, b_profiles = (c / "fowl/profiles" for c in self._configs)
        write_profile(a_profiles, "share", share_profile(mailbox_url, relay, self.server.port))
        write_profile(b_profiles, "join", join_profile(mailbox_url, relay, self.listen_port))

    def start(self) -> tuple[Fowld, Fowld]:
        a_bus, b_bus = self._buses
        a_config, b_config = self._configs
        return start_fowld(self._processes, a_bus, a_config), start_fowld(self._processes, b_bus, b_config)

    def pair(self) -> Pair:
        a, b = self.start()
        return invite_and_accept(a, b, self.listen_port)


@pytest.fixture
def pair_setup(processes, dbus_bus, second_bus, mailbox, transit_relay, tmp_path) -> Iterator[PairSetup]:
    setup = PairSetup(processes, (dbus_bus.address, second_bus), mailbox.url, transit_relay.hint, tmp_path)
    yield setup
    setup.server.close()


# --- tests ------------------------------------------------------------------------------------


def test_session_object_paths_escape_ids():
    assert escape_path_element("ssh-share-3") == "ssh_2dshare_2d3"
    assert escape_path_element("a.b_c") == "a_2eb_5fc"
    assert escape_path_element("café") == "caf_c3_a9"  # UTF-8 bytes, each escaped


def test_only_supervised_sessions_restart():
    assert should_restart(Mode.FIXED, RestartPolicy.ON_FAILURE, failed=True)
    assert not should_restart(Mode.FIXED, RestartPolicy.ON_FAILURE, failed=False)
    assert should_restart(Mode.FIXED, RestartPolicy.ALWAYS, failed=False)
    assert not should_restart(Mode.FIXED, RestartPolicy.NEVER, failed=True)
    for mode in (Mode.INVITE, Mode.ACCEPT):  # their code is consumed: never restarted
        assert not should_restart(mode, RestartPolicy.ALWAYS, failed=True)


def test_session_ids_count_up_and_resolve_by_unique_prefix():
    registry = SessionRegistry()
    ids = [registry.new_id("web"), registry.new_id("ssh"), registry.new_id("web")]
    assert ids == ["web-1", "ssh-2", "web-3"]

    class Stub:
        def __init__(self, id: str):
            self.id = id

    for session_id in ids:
        registry.add(Stub(session_id))
    assert registry.find("ssh").id == "ssh-2"
    assert registry.find("web-3").id == "web-3"
    with pytest.raises(SessionNotFound, match="ambiguous"):
        registry.find("web")
    with pytest.raises(SessionNotFound):
        registry.find("nothing")


# The API as the contract states it: (interface, member, kind, signature).
MANAGER_API = {
    (MANAGER, ".Invite", "method", "s", "os"),
    (MANAGER, ".Accept", "method", "ss", "o"),
    (MANAGER, ".Start", "method", "s", "o"),
    (MANAGER, ".InviteWith", "method", "sa{sv}", "os"),
    (MANAGER, ".AcceptWith", "method", "ssa{sv}", "o"),
    (MANAGER, ".InviteInline", "method", "a{sv}a{sv}", "os"),
    (MANAGER, ".AcceptInline", "method", "a{sv}sa{sv}", "o"),
    (MANAGER, ".Forget", "method", "s", "-"),
    (MANAGER, ".Pairings", "property", "aa{sv}", None),
    (MANAGER, ".PairingErrors", "property", "a(ss)", None),
    (MANAGER, ".Reload", "method", "-", "asasas"),
    (MANAGER, ".GetSession", "method", "s", "o"),
    (MANAGER, ".Version", "property", "s", None),
    (MANAGER, ".Profiles", "property", "aa{sv}", None),
    (MANAGER, ".ProfileErrors", "property", "a(ss)", None),
    (MANAGER, ".Sessions", "property", "ao", None),
    ("org.freedesktop.DBus.ObjectManager", ".GetManagedObjects", "method", "-", "a{oa{sa{sv}}}"),
    ("org.freedesktop.DBus.ObjectManager", ".InterfacesAdded", "signal", "oa{sa{sv}}", None),
    ("org.freedesktop.DBus.ObjectManager", ".InterfacesRemoved", "signal", "oas", None),
    ("org.freedesktop.DBus.Properties", ".PropertiesChanged", "signal", "sa{sv}as", None),
}
SESSION_API = {
    (SESSION, ".Close", "method", "-", "-"),
    (SESSION, ".AddService", "method", "ss", "-"),
    (SESSION, ".RemoveService", "method", "s", "-"),
    (SESSION, ".AddClient", "method", "ss", "-"),
    (SESSION, ".RemoveClient", "method", "s", "-"),
    (SESSION, ".Ping", "method", "-", "d"),
    (SESSION, ".StateChanged", "signal", "ss", None),
    (SESSION, ".ConnectionOpened", "signal", "uss", None),
    (SESSION, ".ConnectionClosed", "signal", "usstts", None),
} | {
    (SESSION, f".{name}", "property", signature, None)
    for name, signature in (
        ("Id", "s"), ("Profile", "s"), ("State", "s"), ("StateReason", "s"), ("Code", "s"),
        ("Verifier", "s"), ("PeerConnected", "b"), ("Path", "s"), ("Hint", "s"), ("Generation", "u"),
        ("MailboxUrl", "s"), ("MailboxState", "s"), ("Services", "a(ssss)"), ("Clients", "a(ssus)"),
        ("BytesIn", "t"), ("BytesOut", "t"), ("OpenConnections", "u"), ("TotalConnections", "t"),
        ("CreatedUSec", "t"), ("Restarts", "u"),
    )
}  # fmt: skip


def introspected(bus: str, path: str) -> set[tuple]:
    """busctl introspect's table as (interface, member, kind, signature, result) rows."""
    result = busctl(bus, "introspect", "--no-pager", "--no-legend", BUS_NAME, path)
    assert result.returncode == 0, result.stderr
    rows, interface = set(), None
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields[1] == "interface":
            interface = fields[0]
        else:
            rows.add(
                (interface, fields[0], fields[1], fields[2], fields[3] if fields[1] == "method" else None)
            )
    return rows


def test_busctl_introspect_shows_the_whole_api(processes, dbus_bus, mailbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # --profiles instead of $XDG_CONFIG_HOME/fowl/profiles
    write_profile(elsewhere, "web", f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n")
    fowld = start_fowld(processes, dbus_bus.address, tmp_path, ("daemon", "--profiles", str(elsewhere)))
    assert MANAGER_API <= introspected(dbus_bus.address, MANAGER_PATH)

    path, code = fowld.call("Invite", "s", "web")
    assert path == "/org/fowl/Fowld1/session/web_2d1"
    session_rows = introspected(dbus_bus.address, path)
    assert SESSION_API <= session_rows
    # Sessions are not object managers; only the manager is.
    assert not any(row[0] == "org.freedesktop.DBus.ObjectManager" for row in session_rows)
    tree = busctl(dbus_bus.address, "tree", "--list", BUS_NAME).stdout.split()
    assert tree == ["/", "/org", "/org/fowl", MANAGER_PATH, "/org/fowl/Fowld1/session", path]

    props = properties(dbus_bus.address, path)
    assert (props["Id"], props["Profile"], props["Code"], props["State"]) == ("web-1", "web", code, "waiting")
    assert props["Services"] == [["web", "tcp:host=localhost:port=8080", "requesting", ""]]
    assert abs(props["CreatedUSec"] / 1e6 - time.time()) < 60


def test_bad_requests_get_named_errors_and_bad_profiles_are_reported(processes, dbus_bus, mailbox, tmp_path):
    profiles = tmp_path / "fowl/profiles"
    write_profile(profiles, "web", f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n")
    code = f"{secrets.randbelow(10**6) + 1000}-{secrets.token_hex(4)}"
    fixed = f"mailbox: {mailbox.url}\ncode: {code}\nclients:\n  - {{name: web}}\n"
    write_profile(profiles, "fixed", fixed, mode=0o644)  # readable by others: warned about
    write_profile(profiles, "broken", "description: fine\nservices: [\n")
    fowld = start_fowld(processes, dbus_bus.address, tmp_path)
    bus = dbus_bus.address

    manager = fowld.manager()
    assert sorted(p["name"] for p in manager["Profiles"]) == ["fixed", "web"]
    fixed_entry = next(p for p in manager["Profiles"] if p["name"] == "fixed")
    assert (fixed_entry["has_code"], fixed_entry["clients"]) == (True, ["web <- tcp:0:interface=127.0.0.1"])
    [(file, message)] = manager["ProfileErrors"]
    assert file == str(profiles / "broken.yaml")
    assert re.match(rf"{re.escape(file)}:\d+: invalid YAML", message)
    log = processes.output(fowld.process)[1]
    assert "broken.yaml:" in log and "chmod go-rwx" in log and code not in log

    def error(method: str, *args: str, path: str = MANAGER_PATH) -> str:
        return gdbus_error(bus, path, method, *args)[0]

    assert error(f"{MANAGER}.Invite", "missing") == ERROR + "ProfileNotFound"
    name, message = gdbus_error(bus, MANAGER_PATH, f"{MANAGER}.Start", "broken")
    assert name == ERROR + "InvalidProfile" and "broken.yaml:" in message
    assert error(f"{MANAGER}.Start", "web") == ERROR + "NoCode"
    assert error(f"{MANAGER}.Accept", "web", "not a code") == "org.freedesktop.DBus.Error.InvalidArgs"
    assert error(f"{MANAGER}.Accept", "web", "") == "org.freedesktop.DBus.Error.InvalidArgs"
    assert error(f"{MANAGER}.GetSession", "web-99") == ERROR + "SessionNotFound"
    assert error(f"{MANAGER}.Invite", "web", "extra") == "org.freedesktop.DBus.Error.InvalidArgs"

    # The valid fixed-code profile starts despite its broken neighbour; a second Start is refused.
    [path] = fowld.call("Start", "s", "fixed")
    assert error(f"{MANAGER}.Start", "fixed") == ERROR + "AlreadyExists"
    assert fowld.call("GetSession", "s", "fix") == [path]  # a unique prefix is enough
    on_session = {"path": path}
    assert (
        error(f"{SESSION}.AddService", "x", "tcp:nohost", **on_session)
        == "org.freedesktop.DBus.Error.InvalidArgs"
    )
    assert error(f"{SESSION}.AddService", "", "22", **on_session) == "org.freedesktop.DBus.Error.InvalidArgs"
    assert error(f"{SESSION}.AddClient", "web", "8080", **on_session) == ERROR + "AlreadyExists"
    assert (
        error(f"{SESSION}.RemoveService", "nothing", **on_session) == "org.freedesktop.DBus.Error.InvalidArgs"
    )
    assert error(f"{SESSION}.Ping", **on_session) == ERROR + "Failed"  # no peer yet
    assert (
        error("org.freedesktop.DBus.Properties.Set", SESSION, "State", "<'closed'>", **on_session)
        == "org.freedesktop.DBus.Error.PropertyReadOnly"
    )
    # Valid changes show up in the properties.
    call(bus, path, SESSION, "AddService", "ss", "ssh", "tcp:localhost:22")
    call(bus, path, SESSION, "AddClient", "ss", "db", "unix:path=/tmp/fowld-test-nothing.sock")
    props = properties(bus, path)
    assert ["ssh", "tcp:host=localhost:port=22", "requesting", ""] in props["Services"]
    assert [c[0] for c in props["Clients"]] == ["web", "db"]
    assert all(c[3] == "waiting" for c in props["Clients"])


def test_two_daemons_pair_through_profiles_and_forward(pair_setup, processes, second_bus):
    started = time.monotonic()
    a, b = pair_setup.start()
    seen = monitor(processes, second_bus)
    pair = invite_and_accept(a, b, pair_setup.listen_port)
    assert "StateChanged ('connected', '')" in seen()
    assert re.search(SESSION_CHANGED + "'State': <'connected'>", seen())

    a_props, b_props = properties(pair.a.bus, pair.a_path), properties(pair.b.bus, pair.b_path)
    assert a_props["Verifier"] == b_props["Verifier"] and len(a_props["Verifier"]) == 64
    assert a_props["Code"] == b_props["Code"] == ""  # never shown: the code is a secret
    assert b_props["PeerConnected"] and b_props["Path"] in ("direct", "relay")
    until(
        lambda: (
            properties(pair.b.bus, pair.b_path)["Clients"]
            == [["blob", f"tcp:{pair.listen_port}:interface=127.0.0.1", pair.listen_port, "listening"]]
        ),
        "the client listener",
        PAIR_TIMEOUT,
        0.1,
    )
    until(
        lambda: properties(pair.a.bus, pair.a_path)["Services"][0][2] == "ready",
        "the service",
        PAIR_TIMEOUT,
        0.1,
    )

    # A large transfer, with backpressure: the data arrive intact and the counters add up.
    size = len(pair_setup.blob)
    got = fetch(pair.listen_port, b"GET\n", size)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(pair_setup.blob).hexdigest()
    until(lambda: properties(pair.b.bus, pair.b_path)["BytesOut"] == size, "byte counters", 5, 0.1)
    b_props = properties(pair.b.bus, pair.b_path)
    assert (b_props["BytesIn"], b_props["TotalConnections"]) == (4, 1)
    until(lambda: properties(pair.a.bus, pair.a_path)["BytesIn"] == size, "A's byte counters", 5, 0.1)
    assert properties(pair.a.bus, pair.a_path)["BytesOut"] == 4
    assert re.search(r"Session\.ConnectionOpened \(uint32 1, 'blob', 'outgoing'\)", seen())
    until(lambda: f"'BytesOut': <uint64 {size}>" in seen(), "the final byte count", 2, 0.1)
    counter_signals = len(re.findall(SESSION_CHANGED + "'BytesOut'", seen()))
    assert 1 <= counter_signals <= 2 * (time.monotonic() - started) + 2  # coalesced: ~2 per second

    # A short exchange ends with the service closing: ConnectionClosed carries its byte counts.
    assert fetch(pair.listen_port, b"HEY\n") == GREETING
    assert pair_setup.server.requests == [b"GET\n", b"HEY\n"]
    pattern = (
        rf"Session\.ConnectionClosed \(uint32 2, 'blob', 'outgoing', uint64 4, uint64 {len(GREETING)}, ''\)"
    )
    until(lambda: re.search(pattern, seen()), "ConnectionClosed", 5, 0.1)
    assert properties(pair.b.bus, pair.b_path)["TotalConnections"] == 2

    # Closing one side ends both: the peer hears the goodbye; both objects go away.
    call(pair.b.bus, pair.b_path, SESSION, "Close")
    for fowld in (pair.a, pair.b):
        until(lambda f=fowld: f.manager()["Sessions"] == [], "the session objects to go", 15, 0.1)
    text = seen()
    assert "StateChanged ('closing', 'closed locally')" in text and "StateChanged ('closed'" in text
    assert f"InterfacesRemoved (objectpath '{pair.b_path}'" in text


def test_startup_signals_are_seen_by_a_monitor(processes, dbus_bus, mailbox, tmp_path):
    """A client watching from the start sees InterfacesAdded, StateChanged and PropertiesChanged."""
    write_profile(
        tmp_path / "fowl/profiles",
        "web",
        f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n",
    )
    fowld = start_fowld(processes, dbus_bus.address, tmp_path)
    seen = monitor(processes, dbus_bus.address)
    path, code = fowld.call("Invite", "s", "web")
    code_changed = SESSION_CHANGED + re.escape(f"'Code': <'{code}'>")  # an invitation's code, to pass on
    until(lambda: re.search(code_changed, seen()), "the code to be announced", 5, 0.1)
    text = seen()
    added = text.index(f"InterfacesAdded (objectpath '{path}'")
    assert added < text.index("StateChanged ('waiting', '')") < re.search(code_changed, text).start()
    assert f"'Sessions': <[objectpath '{path}']>" in text


def test_reload_keeps_sessions_of_unchanged_and_changed_profiles(pair_setup, processes):
    pair = pair_setup.pair()
    profiles = pair.b.profiles
    join = profiles / "join.yaml"
    join.write_text(join.read_text().replace("reach the peer's", "reach the other side's"))
    code = f"{secrets.randbelow(10**6) + 1000}-{secrets.token_hex(4)}"
    extra = (
        f"mailbox: {pair_setup.mailbox_url}\ncode: {code}\nautostart: true\nclients:\n  - {{name: other}}\n"
    )
    write_profile(profiles, "extra", extra)
    write_profile(profiles, "bad", "clients: 5\n")

    added, changed, removed = pair.b.call("Reload")
    assert (added, changed, removed) == (["extra"], ["join"], [])
    manager = pair.b.manager()
    extra_path = "/org/fowl/Fowld1/session/extra_2d2"  # a new autostart profile starts
    assert manager["Sessions"] == [pair.b_path, extra_path]
    assert [e[0] for e in manager["ProfileErrors"]] == [str(profiles / "bad.yaml")]
    props = properties(pair.b.bus, pair.b_path)
    assert (props["State"], props["Restarts"]) == ("connected", 0)
    [seconds] = call(pair.b.bus, pair.b_path, SESSION, "Ping")
    assert 0 < seconds < 5
    # Still forwarding, through the same session object.
    until(
        lambda: properties(pair.b.bus, pair.b_path)["Clients"][0][3] == "listening",
        "the client listener",
        PAIR_TIMEOUT,
        0.1,
    )
    assert fetch(pair.listen_port, b"HEY\n") == GREETING

    (profiles / "extra.yaml").unlink()
    assert pair.b.call("Reload") == [[], [], ["extra"]]
    assert pair.b.manager()["Sessions"] == [pair.b_path, extra_path]  # removed, still running
    assert properties(pair.b.bus, extra_path)["State"] == "waiting"


def fixed_profile(mailbox_url: str, relay: str, code: str, restart: str, body: str) -> str:
    return (
        f"mailbox: {mailbox_url}\ntransit-relay: {relay}\ncode: {code}\n"
        f"autostart: true\nrestart: {restart}\n{body}"
    )


def test_autostart_sessions_pair_again_after_kill_9(
    processes, dbus_bus, second_bus, mailbox, transit_relay, tmp_path
):
    a_config, b_config = tmp_path / "a", tmp_path / "b"
    a_ports = {name: free_port() for name in ("alpha", "beta")}
    for name, restart in (("alpha", "on-failure"), ("beta", "always")):
        code = f"{secrets.randbelow(10**6) + 1000}-{secrets.token_hex(4)}-{name}"
        client = f"clients:\n  - {{name: svc, listen: {a_ports[name]}}}\n"
        service = "services:\n  - {name: svc, connect: 9}\n"
        relay = transit_relay.hint
        write_profile(
            a_config / "fowl/profiles", name, fixed_profile(mailbox.url, relay, code, restart, client)
        )
        write_profile(
            b_config / "fowl/profiles", name, fixed_profile(mailbox.url, relay, code, restart, service)
        )
    a = start_fowld(processes, dbus_bus.address, a_config)
    b = start_fowld(processes, second_bus, b_config)

    def all_connected(fowld: Fowld) -> dict | None:
        sessions = fowld.sessions()
        ok = sorted(sessions) == ["alpha", "beta"] and all(
            s["State"] == "connected" for s in sessions.values()
        )
        return sessions if ok else None

    before = until(lambda: all_connected(a), "autostart sessions to connect on A", PAIR_TIMEOUT, 0.1)
    until(lambda: all_connected(b), "autostart sessions to connect on B", PAIR_TIMEOUT, 0.1)

    b.process.kill()  # SIGKILL: no goodbye to the peer
    b.process.wait(5)
    until(lambda: all(s["State"] != "connected" for s in a.sessions().values()), "A to notice", 10, 0.1)
    b = start_fowld(processes, second_bus, b_config)

    after = until(lambda: all_connected(a), "A's sessions to connect again", 30, 0.1)
    b_after = until(lambda: all_connected(b), "B's sessions to connect again", PAIR_TIMEOUT, 0.1)
    for name in ("alpha", "beta"):
        assert after[name]["path"] == before[name]["path"]  # same session object, restarted
        assert after[name]["Id"] == before[name]["Id"]
        assert after[name]["Restarts"] >= 1
        assert after[name]["Verifier"] == b_after[name]["Verifier"] != before[name]["Verifier"]
        assert b_after[name]["Restarts"] == 0


def test_sd_notify_ready_status_reload_and_stop(processes, dbus_bus, mailbox, tmp_path):
    write_profile(
        tmp_path / "fowl/profiles",
        "web",
        f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n",
    )
    with tempfile.TemporaryDirectory(prefix="fowld-notify-") as directory:
        path = os.path.join(directory, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            process = spawn_daemon(
                processes, dbus_bus.address, tmp_path, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000"
            )
            got = datagrams(sock, lambda m: "READY=1" in m and any(x.startswith("STATUS=") for x in m), 10.0)
            assert (
                busctl(dbus_bus.address, "status", BUS_NAME).returncode == 0
            )  # READY=1 means the name is ours
            status = next(x for x in got if x.startswith("STATUS="))
            assert status == "STATUS=0 sessions, 0 connected; 1 profile"
            datagrams(sock, lambda m: "WATCHDOG=1" in m, 5)

            write_profile(tmp_path / "fowl/profiles", "bad", "nothing: here\n")
            process.send_signal(signal.SIGHUP)
            new_status = "STATUS=0 sessions, 0 connected; 1 profile (1 invalid)"
            got = datagrams(sock, lambda m: "READY=1" in m and new_status in m, 10.0)
            reloading = next(i for i, x in enumerate(got) if x.startswith("RELOADING=1"))
            assert reloading < got.index("READY=1")

            process.send_signal(signal.SIGTERM)
            datagrams(sock, lambda m: "STOPPING=1" in m, 10.0)
            assert process.wait(10) == 0


def test_a_second_daemon_on_the_same_bus_exits_with_a_clear_message(processes, dbus_bus, tmp_path):
    start_fowld(processes, dbus_bus.address, tmp_path)
    second = spawn_daemon(processes, dbus_bus.address, tmp_path)
    assert second.wait(START_TIMEOUT) == 1
    assert f"the bus name {BUS_NAME} is already owned" in processes.output(second)[1]


def test_no_bus_exits_with_a_clear_message(processes, tmp_path):
    process = spawn_daemon(processes, f"unix:path={tmp_path}/no-bus-here", tmp_path)
    assert process.wait(START_TIMEOUT) == 1
    assert "cannot connect to the session bus" in processes.output(process)[1]
