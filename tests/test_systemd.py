"""The shipped systemd unit and D-Bus activation file, checked by systemd and dbus-daemon.

The shipped unit starts /usr/bin/fowld, where the Debian package puts it. An
installer rewrites that one ExecStart= line for fowld installed elsewhere; the
tests do the same, pointing it at %h/.local/bin/fowld in a fresh HOME whose
.local/bin/fowld is the installed console script, and verify the result.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from txdbus import client, error

from harness.servers import START_TIMEOUT, ProcessGroup, dbus_daemon, read_line, venv_script

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = REPO / "fowld" / "data"
UNIT = SYSTEMD_DIR / "fowld.service"
ACTIVATION = SYSTEMD_DIR / "org.fowl.Fowld1.service"
GUIDE = REPO / "docs" / "systemd.md"


def read_ini(path: Path) -> configparser.ConfigParser:
    # systemd and D-Bus keys are case-sensitive and use % for their own specifiers.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser


@pytest.fixture
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    return path


@pytest.fixture
def fowld_script() -> Path:
    """The installed console script: next to this interpreter, else on PATH."""
    beside = venv_script("fowld")
    found = beside if beside.exists() else shutil.which("fowld")
    if found is None:
        pytest.fail("the fowld console script is not installed: run `pip install -e .` first")
    return Path(found)


@pytest.fixture
def user_home(tmp_path, fowld_script) -> dict[str, str]:
    """An environment for `systemd-analyze --user` with a home holding ~/.local/bin/fowld."""
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "fowld").symlink_to(fowld_script)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    environ = dict(os.environ)
    environ.update(
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        # Keep the real user's units and drop-ins out of the check.
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        LC_ALL="C",
    )
    return environ


def with_exec_start(program: str) -> str:
    """The shipped unit with its one ExecStart= line replaced, as an installer does."""
    text = UNIT.read_text()
    assert len(re.findall(r"(?m)^ExecStart=", text)) == 1
    return re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={program}", text)


@pytest.fixture
def home_unit(tmp_path) -> Path:
    """The shipped unit, rewritten to start ~/.local/bin/fowld."""
    path = tmp_path / "unit" / "fowld.service"
    path.parent.mkdir()
    path.write_text(with_exec_start("%h/.local/bin/fowld"))
    return path


def verify(analyze: str, unit: Path, environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_unit_verifies(systemd_analyze, user_home, home_unit):
    result = verify(systemd_analyze, home_unit, user_home)
    # verify exits 0 on unknown keys and bad values and only warns: stderr must be empty.
    assert result.stderr == ""
    assert result.returncode == 0


def test_verification_catches_mistakes(systemd_analyze, user_home, home_unit, tmp_path):
    broken = tmp_path / "fowld.service"
    text = home_unit.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    broken.write_text(text)
    warned = verify(systemd_analyze, broken, user_home)
    assert "WatchdogSecs" in warned.stderr

    os.unlink(Path(user_home["HOME"]) / ".local" / "bin" / "fowld")
    missing = verify(systemd_analyze, home_unit, user_home)
    assert missing.returncode != 0
    assert "fowld" in missing.stderr


def test_documented_sandbox_drop_in_verifies(systemd_analyze, user_home, home_unit):
    blocks = re.findall(r"```ini\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    (sandbox,) = [block for block in blocks if "ProtectSystem=" in block]
    drop_ins = Path(user_home["XDG_CONFIG_HOME"]) / "systemd" / "user" / "fowld.service.d"
    drop_ins.mkdir(parents=True)
    drop_in = drop_ins / "sandbox.conf"
    drop_in.write_text(sandbox)

    result = verify(systemd_analyze, home_unit, user_home)
    assert result.stderr == ""
    assert result.returncode == 0

    # The same check notices a mistake in the drop-in, so the drop-in was read.
    drop_in.write_text(sandbox + "ProtectSystm=strict\n")
    assert "ProtectSystm" in verify(systemd_analyze, home_unit, user_home).stderr


def test_unit_matches_what_the_daemon_does():
    unit = read_ini(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify"  # the daemon sends READY=1
    assert service["ExecReload"].split() == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["ExecStart"] == "/usr/bin/fowld"  # no arguments: the D-Bus service
    assert int(service["WatchdogSec"]) > 0  # the daemon pings at half of it
    assert service["BusName"] == read_ini(ACTIVATION)["D-BUS Service"]["Name"]
    # Forwarding needs the bus and UNIX streams, TCP over IPv4 and IPv6, and
    # netlink to list local addresses.
    families = set(service["RestrictAddressFamilies"].split())
    assert families >= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert service.get("MemoryDenyWriteExecute", "no") == "no"
    # A private /tmp would hide users' sockets there from fowld and fowld's from them.
    assert service.get("PrivateTmp", "no") == "no"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_activation_file_names_the_unit():
    entry = read_ini(ACTIVATION)["D-BUS Service"]
    assert entry["Name"] == "org.fowl.Fowld1"
    assert ACTIVATION.name == entry["Name"] + ".service"  # what the bus expects of session files
    assert (SYSTEMD_DIR / entry["SystemdService"]) == UNIT
    exec_path = Path(entry["Exec"].split()[0])
    assert exec_path.is_absolute()
    assert os.access(exec_path, os.X_OK)


# MemoryDenyWriteExecute= is systemd's name for a W^X policy; Linux 6.3 offers
# the same to any process through prctl(PR_SET_MDWE).
WX_PROBE = """
import ctypes, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if sys.argv[1] == "wx-denied":
    if ctypes.CDLL(None).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(77)
from OpenSSL import SSL
SSL.Context(SSL.TLS_METHOD).set_verify(SSL.VERIFY_PEER, lambda *args: True)
"""


def test_tls_verification_needs_writable_executable_memory():
    """Why the unit leaves MemoryDenyWriteExecute= off."""

    def probe(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", WX_PROBE, mode], capture_output=True, text=True, timeout=60
        )

    assert probe("wx-allowed").returncode == 0
    denied = probe("wx-denied")
    if denied.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later has it)")
    assert "write+execute memory" in denied.stderr, (
        "TLS works under W^X now: consider MemoryDenyWriteExecute=yes in the unit"
    )


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def activation_bus(processes: ProcessGroup) -> Iterator[Callable[..., str]]:
    """Start a private bus whose only service directory holds the shipped activation file.

    ``activation_bus(*options)`` returns the bus address.
    """
    daemon = dbus_daemon()
    if daemon is None:
        pytest.fail("dbus-daemon is not installed (Debian package: dbus)")
    # Short: a UNIX socket path is limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="fowld-bus-") as name:
        directory = Path(name)

        def start(*options: str) -> str:
            services = directory / "services"
            services.mkdir()
            shutil.copy(ACTIVATION, services)
            config = directory / "bus.conf"
            config.write_text(BUS_CONFIG.format(socket=directory / "bus", services=services))
            argv = [daemon, "--nofork", "--print-address=1", f"--config-file={config}", *options]
            process = processes.spawn(argv, stdout=subprocess.PIPE, name="dbus-daemon")
            try:
                return read_line(process.stdout, START_TIMEOUT).decode().strip()
            except (TimeoutError, EOFError) as e:
                pytest.fail(f"dbus-daemon did not start: {e}\n{processes.describe(process)}")

        yield start
        processes.stop_all()


@pytest.fixture
def connect(activation_bus):
    """``connect(address)``: a txdbus connection, closed before the bus stops."""
    opened = []

    @defer.inlineCallbacks
    def open_connection(address: str):
        connection = yield client.connect(reactor, address).addTimeout(10, reactor)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.disconnect()


def call_bus(connection, method: str, signature: str | None = None, body=None):
    return connection.callRemote(
        "/org/freedesktop/DBus",
        method,
        interface="org.freedesktop.DBus",
        destination="org.freedesktop.DBus",
        signature=signature,
        body=body,
    )


@pytest_twisted.inlineCallbacks
def test_bus_asks_systemd_for_the_unit(activation_bus, connect):
    """With systemd activation, the bus hands the request to systemd as fowld.service."""
    address = activation_bus("--systemd-activation")
    # Stand in for systemd: own its name, take the request, "start the unit".
    systemd = yield connect(address)
    yield systemd.requestBusName("org.freedesktop.systemd1")
    requested = defer.Deferred()
    yield systemd.addMatch(
        lambda message: requested.callback(message.body),
        interface="org.freedesktop.systemd1.Activator",
        member="ActivationRequest",
    )
    caller = yield connect(address)

    names = yield call_bus(caller, "ListActivatableNames")
    assert "org.fowl.Fowld1" in names

    started = call_bus(caller, "StartServiceByName", "su", ["org.fowl.Fowld1", 0])
    body = yield requested.addTimeout(10, reactor)
    assert body == ["fowld.service"]
    daemon = yield connect(address)
    yield daemon.requestBusName("org.fowl.Fowld1")
    reply = yield started.addTimeout(10, reactor)
    assert reply == 1  # DBUS_START_REPLY_SUCCESS


@pytest_twisted.inlineCallbacks
def test_bus_without_systemd_does_not_start_the_daemon(activation_bus, connect):
    """Exec=/bin/false: the daemon never runs outside the unit's supervision."""
    address = activation_bus()
    caller = yield connect(address)
    with pytest.raises(error.RemoteError) as failure:
        yield call_bus(caller, "StartServiceByName", "su", ["org.fowl.Fowld1", 0])
    assert failure.value.errName == "org.freedesktop.DBus.Error.Spawn.ChildExited"
    owner = yield call_bus(caller, "NameHasOwner", "s", ["org.fowl.Fowld1"])
    assert owner is False
