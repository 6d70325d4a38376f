"""Arbitrary arguments for every D-Bus method of one real daemon on a private bus.

Hypothesis generates strings (any Unicode a D-Bus string may hold, huge ones,
path-like and endpoint-like text) for the manager's and a session's methods,
sent by a txdbus client. Each call must succeed or fail with a named error of
the API; after every call the daemon still answers, and its log never shows an
unhandled exception. ``FOWL_FUZZ_EXAMPLES`` sets the number of cases per test.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_daemon import BUS_NAME, ERROR, MANAGER, MANAGER_PATH, SESSION, Fowld, start_fowld
from twisted.internet.defer import Deferred
from txdbus import client
from txdbus.error import RemoteError

from fowld.dbus.values import typed
from harness.fowld import write_profile
from harness.servers import ProcessGroup, dbus_daemon, start_dbus_bus
from harness.wait import get_reactor

EXAMPLES = int(os.environ.get("FOWL_FUZZ_EXAMPLES", "50"))
CALL_TIMEOUT = 40.0  # seconds; Invite may wait up to 30 s for a code
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
PROPERTIES = "org.freedesktop.DBus.Properties"
FIXED_CODE = "7-fuzzing-fixed"

pytestmark = pytest.mark.skipif(dbus_daemon() is None, reason="dbus-daemon is not installed")

FUZZ = settings(max_examples=EXAMPLES)  # fewer than the profile's: each case is a D-Bus round trip


# --- what a D-Bus string may hold --------------------------------------------------------------

# D-Bus strings are UTF-8 without NUL; surrogates cannot be encoded at all.
characters = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
text = st.text(characters, max_size=80)
huge = st.builds(lambda piece, times: piece * times, st.text(characters, min_size=1, max_size=8),
                 st.integers(1000, 200_000))  # fmt: skip
path_like = st.lists(
    st.sampled_from(["", ".", "..", "~", "etc", "passwd", "tmp", "é", "\\", "%2e%2e", "web", "fixed"]) | text,
    min_size=1,
    max_size=8,
).map("/".join)
# the daemon's own profiles, so some calls get past the lookup
profile_names = st.sampled_from(["web", "fixed", "broken"]) | text | path_like | huge
codes = (
    st.builds("{}-{}".format, st.integers(-5, 10**12), text)
    | st.sampled_from(["", "1", "1-", "-", "0-:", "0-a-b", "999999999999999999999-x", FIXED_CODE])
    | text
    | huge
)
session_ids = st.sampled_from(["web", "web-1", "w", "fixed-", ""]) | text | path_like | huge
valid_names = st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True)
names = st.sampled_from(["ssh", "a", "-", ".", "x" * 64, "x" * 65]) | valid_names | text | huge
endpoint_kinds = st.sampled_from(
    [
        "tcp:",
        "tcp6:",
        "unix:",
        "unix:path=",
        "ssl:",
        "tor:",
        "systemd:",
        "stdio:",
        "tcp:host=",
        "tcp:0:interface=",
    ]
)
numbers = st.integers(-(2**70), 2**70).map(str)
endpoints = (
    st.builds("{}{}".format, endpoint_kinds, text | numbers | path_like)
    | st.builds("{}:{}".format, text, numbers)
    | numbers
    | text
    | path_like
    | huge
)


# --- one daemon for the whole module -----------------------------------------------------------


@dataclass
class Daemon:
    fowld: Fowld
    processes: ProcessGroup
    connection: Any  # txdbus client connection
    session_path: str  # a waiting session the session tests use

    def call(self, path: str, interface: str, method: str, signature: str, *args: Any) -> Deferred:
        return self.connection.callRemote(
            path,
            method,
            interface=interface,
            destination=BUS_NAME,
            signature=signature,
            body=list(args),
            timeout=CALL_TIMEOUT,
            autoStart=False,
        )

    async def outcome(self, path: str, interface: str, method: str, signature: str, *args: Any) -> Outcome:
        """The reply or the D-Bus error; any other exception fails the test."""
        try:
            return Outcome(await self.call(path, interface, method, signature, *args))
        except RemoteError as e:
            return Outcome(None, e.errName, e.message)

    def log_mark(self) -> int:
        """Where the daemon's log ends now, so a check sees only what one case caused."""
        return len(self.processes.output(self.fowld.process)[1])

    async def check_alive(self, since: int) -> None:
        assert self.fowld.process.poll() is None, self.processes.describe(self.fowld.process)
        version = await self.outcome(MANAGER_PATH, PROPERTIES, "Get", "ss", MANAGER, "Version")
        assert version.error is None and isinstance(version.value, str) and version.value, version
        log = self.processes.output(self.fowld.process)[1][since:]
        assert "Traceback" not in log and "Unhandled Error" not in log, log[-3000:]

    async def close_session(self, path: str) -> None:
        if path != self.session_path:
            closed = await self.outcome(path, SESSION, "Close", "")
            # A session that ended by itself meanwhile has no object any more (documented).
            gone = (ERROR + "SessionNotFound", "org.freedesktop.DBus.Error.UnknownObject")
            assert closed.ok or closed.error in gone, closed


@dataclass(frozen=True)
class Outcome:
    value: Any  # the reply's value (None for no value, and on error)
    error: str | None = None  # the D-Bus error name
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def assert_named(result: Outcome, call: str) -> None:
    """A reply, or one of the errors the API names, with a message for a human."""
    event(result.error or "ok")  # the mix of outcomes shows in --hypothesis-show-statistics
    if result.error is not None:
        assert result.error.startswith(ERROR) or result.error == INVALID_ARGS, f"{call}: {result}"
        assert result.message.strip(), f"{call}: {result.error} without a message"


@pytest.fixture(scope="module")
def daemon(mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    processes = ProcessGroup(tmp_path_factory.mktemp("fuzz-processes"))
    config = tmp_path_factory.mktemp("fuzz-config")
    profiles = config / "fowl" / "profiles"
    write_profile(profiles, "web", f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n")
    write_profile(
        profiles, "fixed", f"mailbox: {mailbox.url}\ncode: {FIXED_CODE}\nclients:\n  - {{name: web}}\n"
    )
    write_profile(profiles, "broken", "services: [\n")
    try:
        # a short directory: a UNIX socket path is limited to about 100 bytes
        with tempfile.TemporaryDirectory(prefix="fowld-bus-") as directory:
            bus = start_dbus_bus(processes, Path(directory))
            fowld = start_fowld(processes, bus.address, config)
            connection = pytest_twisted.blockon(client.connect(get_reactor(), bus.address))
            try:
                path, _code = fowld.call("Invite", "s", "web")
                yield Daemon(fowld, processes, connection, path)
            finally:
                connection.disconnect()
    finally:
        processes.stop_all()


# --- the manager -------------------------------------------------------------------------------


@FUZZ
@given(profile=profile_names)
@pytest_twisted.ensureDeferred
async def test_invite_with_any_profile(daemon, profile):
    mark = daemon.log_mark()
    result = await daemon.outcome(MANAGER_PATH, MANAGER, "Invite", "s", profile)
    assert_named(result, f"Invite({profile[:100]!r})")
    if result.ok:  # a session started: (path, code)
        path, code = result.value
        assert path.startswith(MANAGER_PATH + "/session/") and code
        await daemon.close_session(path)
    await daemon.check_alive(mark)


@FUZZ
@given(profile=profile_names, code=codes)
@pytest_twisted.ensureDeferred
async def test_accept_with_any_profile_and_code(daemon, profile, code):
    mark = daemon.log_mark()
    result = await daemon.outcome(MANAGER_PATH, MANAGER, "Accept", "ss", profile, code)
    assert_named(result, f"Accept({profile[:100]!r}, {code[:100]!r})")
    if result.ok:
        await daemon.close_session(result.value)
    await daemon.check_alive(mark)


# inline profiles: profile keys and others, each with a value of any of several D-Bus types
profile_keys = st.sampled_from(["services", "clients", "mailbox", "transit-relay", "code", "restart"]) | text
entry = st.dictionaries(
    st.sampled_from(["name", "connect", "listen", "listen-port"]) | text, text, max_size=4
)
variant_values = (
    text
    | st.integers(-(2**31), 2**31 - 1)
    | st.booleans()
    | st.lists(text, max_size=4).map(lambda items: typed("as", items))
    | st.lists(entry, max_size=4).map(lambda items: typed("aa{sv}", items))
)
valid_clients = st.lists(st.builds(lambda n: {"name": n}, valid_names), min_size=1, max_size=3)
inline_profiles = (
    st.dictionaries(profile_keys, variant_values, max_size=6)
    | valid_clients.map(lambda items: {"clients": typed("aa{sv}", items)})
)
inline_options = st.just({}) | st.dictionaries(st.sampled_from(["name"]) | text, text, max_size=2)


@FUZZ
@given(profile=inline_profiles, options=inline_options)
@pytest_twisted.ensureDeferred
async def test_accept_with_any_inline_profile(daemon, profile, options):
    mark = daemon.log_mark()
    result = await daemon.outcome(
        MANAGER_PATH, MANAGER, "AcceptInline", "a{sv}sa{sv}", profile, "5-fuzzed-code", options
    )
    assert_named(result, f"AcceptInline({str(profile)[:200]}, {str(options)[:100]})")
    if result.ok:
        await daemon.close_session(result.value)
    await daemon.check_alive(mark)


@FUZZ
@given(profile=profile_names)
@pytest_twisted.ensureDeferred
async def test_start_with_any_profile(daemon, profile):
    mark = daemon.log_mark()
    result = await daemon.outcome(MANAGER_PATH, MANAGER, "Start", "s", profile)
    assert_named(result, f"Start({profile[:100]!r})")
    if result.ok:
        await daemon.close_session(result.value)
    await daemon.check_alive(mark)


@FUZZ
@given(session_id=session_ids)
@pytest_twisted.ensureDeferred
async def test_get_session_with_any_id(daemon, session_id):
    mark = daemon.log_mark()
    result = await daemon.outcome(MANAGER_PATH, MANAGER, "GetSession", "s", session_id)
    assert_named(result, f"GetSession({session_id[:100]!r})")
    if result.ok:
        assert result.value == daemon.session_path  # the only session that stays
    await daemon.check_alive(mark)


# --- a session ---------------------------------------------------------------------------------


@FUZZ
@given(name=names, connect=endpoints)
@pytest_twisted.ensureDeferred
async def test_add_service_with_any_name_and_endpoint(daemon, name, connect):
    mark = daemon.log_mark()
    result = await daemon.outcome(daemon.session_path, SESSION, "AddService", "ss", name, connect)
    assert_named(result, f"AddService({name[:100]!r}, {connect[:100]!r})")
    if result.ok:  # added: it must be removable again
        removed = await daemon.outcome(daemon.session_path, SESSION, "RemoveService", "s", name)
        assert removed.ok, f"RemoveService({name!r}) after adding it: {removed}"
    await daemon.check_alive(mark)


@FUZZ
@given(name=names, listen=endpoints)
@pytest_twisted.ensureDeferred
async def test_add_client_with_any_name_and_endpoint(daemon, name, listen):
    mark = daemon.log_mark()
    result = await daemon.outcome(daemon.session_path, SESSION, "AddClient", "ss", name, listen)
    assert_named(result, f"AddClient({name[:100]!r}, {listen[:100]!r})")
    if result.ok:
        removed = await daemon.outcome(daemon.session_path, SESSION, "RemoveClient", "s", name)
        assert removed.ok, f"RemoveClient({name!r}) after adding it: {removed}"
    await daemon.check_alive(mark)


@FUZZ
@given(name=(names | path_like).filter(lambda name: name != "web"))  # "web" is the session's own
@pytest_twisted.ensureDeferred
async def test_remove_anything_unknown(daemon, name):
    mark = daemon.log_mark()
    for method in ("RemoveService", "RemoveClient"):
        result = await daemon.outcome(daemon.session_path, SESSION, method, "s", name)
        assert result.error == INVALID_ARGS, f"{method}({name[:100]!r}): {result}"
    await daemon.check_alive(mark)
