"""Bad lines on ``fowld --stdio``'s stdin, against a real process; and the parser itself.

Every bad line must get exactly one ``{"kind": "error"}`` line naming its line
number, and the session must go on: a ``status`` command sent after it is
answered. Hypothesis checks that ``parse_command`` fails only with
``CommandError`` and that every event renders to JSON-able lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import pytest_twisted
from hostile_peer import HostilePeer
from hypothesis import given
from hypothesis import strategies as st

from fowld import __version__
from fowld.engine import events
from fowld.engine.status import MailboxState, Phase, SessionStatus
from fowld.stdio.commands import MAX_LINE, CommandError, parse_command
from fowld.stdio.render import render_event, render_status
from harness.fowld import spawn_fowld
from harness.peers import StdioPeer, kind_is
from harness.servers import ProcessGroup
from harness.wait import eventually, get_reactor

READ_TIMEOUT = 5.0  # seconds for fowld to answer one line (it takes milliseconds)


class StdioFowld(StdioPeer):
    """``fowld --stdio`` fed raw lines: counts the lines sent, reads its answers in order."""

    def __init__(self, process: subprocess.Popen, group: ProcessGroup):
        super().__init__(process, group, "fowld")
        self.lines_sent = 0
        self._cursor = 0  # the first line not yet returned by read_until

    def send_line(self, raw: bytes) -> int:
        """Write one line (``raw`` without its newline); returns its line number."""
        return self.send_raw(raw + b"\n", 1 + raw.count(b"\n"))

    def send_raw(self, data: bytes, lines: int) -> int:
        """Write ``data`` as it is, counted as ``lines`` lines; returns the number of the last."""
        self.process.stdin.write(data)
        self.process.stdin.flush()
        self.lines_sent += lines
        return self.lines_sent

    def read_until(self, kind: str) -> list[dict]:
        """Every line up to and including the next one of ``kind``."""
        seen = self.wait_seen(kind_is(kind), READ_TIMEOUT, self._cursor)
        lines, self._cursor = self.lines[self._cursor : seen.index + 1], seen.index + 1
        assert not self.bad_lines, f"fowld wrote a line that is not JSON: {self.bad_lines[0]!r}"
        return lines

    def errors_then_status(self) -> list[dict]:
        """Ask for ``status``; the error lines written before its answer."""
        self.send_line(b'{"kind": "status"}')
        lines = self.read_until("status")
        assert lines[-1]["phase"] in {p.value for p in Phase}
        return [line for line in lines if line["kind"] == "error"]


def _spawn(group: ProcessGroup, mailbox_url: str) -> StdioFowld:
    options = ("--stdio", "--transit-relay", "none", "--mailbox", mailbox_url)
    process = spawn_fowld(group, *options, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return StdioFowld(process, group)


@pytest.fixture(scope="module")
def fowld(mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioFowld]:
    """One process for all the bad-line cases; each case checks it is still alive."""
    group = ProcessGroup(tmp_path_factory.mktemp("stdio-input"))
    try:
        yield _spawn(group, mailbox.url)
    finally:
        group.stop_all()


@pytest.fixture
def alive(fowld: StdioFowld) -> Iterator[StdioFowld]:
    """The shared process, checked to be running and quiet on stderr around each case."""
    assert fowld.process.poll() is None, fowld.group.describe(fowld.process)
    logged_before = len(fowld.group.output(fowld.process)[1])
    yield fowld
    assert fowld.process.poll() is None, fowld.group.describe(fowld.process)
    _assert_quiet(fowld, logged_before)


@pytest.fixture
def own_fowld(mailbox, processes: ProcessGroup) -> StdioFowld:
    """A process of the test's own, for cases that could leave a shared one out of step."""
    return _spawn(processes, mailbox.url)


def _assert_quiet(fowld: StdioFowld, since: int = 0) -> None:
    stderr = fowld.group.output(fowld.process)[1][since:]
    assert "Traceback" not in stderr and "Unhandled" not in stderr, stderr


BAD_LINES = [
    (b"{not json", "invalid JSON"),
    (b'{"kind": "status"', "invalid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"status"', "expected a JSON object, got str"),
    (b"42", "expected a JSON object, got int"),
    (b"null", "expected a JSON object, got NoneType"),
    (b'{"name": "ssh"}', 'missing "kind"'),
    (b'{"kind": 7}', 'missing "kind"'),
    (b'{"kind": "dance"}', "unknown kind 'dance'"),
    (b'{"kind": "set-code"}', '"code" is missing'),
    (b'{"kind": "set-code", "code": 5}', '"code" has the wrong type (int)'),
    (b'{"kind": "set-code", "code": "banana"}', "invalid code: a code looks like"),
    # an option Twisted would refuse fails when the line is read, not when the peer asks
    (b'{"kind": "local", "name": "x", "listen": "unix:path=/tmp/x.sock:mode=zz"}', "bad option value"),
    (b'{"kind": "remote", "name": "y", "connect": "tcp:localhost:22:timeout=soon"}', "bad option value"),
    (b'{"kind": "local", "name": "x", "local_listen_port": "80"}', "wrong type (str)"),
    (b'{"kind": "local", "name": "x", "local_listen_port": true}', "wrong type (bool)"),
    (b'{"kind": "local", "name": "x", "local_listen_port": 70000}', "port number 1-65535"),
    (b'{"kind": "local", "name": "x", "local_listen_port": -1}', "port number 1-65535"),
    (b'{"kind": "remote", "name": "x", "local_connect_port": 0}', "port number 1-65535"),
    (b'{"kind": "remote", "name": "x", "connect": "tcp:localhost:99999"}', "out of range"),
    (b'{"kind": "local", "name": "x", "listen": "udp:53"}', "unsupported kind 'udp'"),
    (b'{"kind": "local", "name": "x", "listen": "tcp:80:interface=127.0.0.1:port=81"}', "expected tcp:"),
    (b'{"kind": "allocate-code", "length": 0}', '"length" must be 1-8'),
    (b'{"kind": "ping", "ping_id": [1]}', '"ping_id" has the wrong type (list)'),
    (b'{"kind": "remove-local", "name": "never"}', "no client named 'never'"),
    (b'{"kind": "remove-remote", "name": "never"}', "no service named 'never'"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"kind": "status", "watch": "\xed\xa0\x80"}', "not UTF-8"),  # an encoded surrogate
]


@pytest.mark.parametrize(("raw", "problem"), BAD_LINES, ids=[repr(raw[:40]) for raw, _ in BAD_LINES])
def test_bad_line_gets_one_error_naming_it(alive: StdioFowld, raw: bytes, problem: str):
    number = alive.send_line(raw)
    errors = alive.errors_then_status()
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith(f"line {number}: "), errors[0]
    assert problem in errors[0]["message"], errors[0]


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_deeply_nested_json_gets_one_error(own_fowld: StdioFowld, opening: bytes):
    """Nesting deeper than the JSON parser's recursion limit, in a line under the length limit."""
    number = own_fowld.send_line(opening * (MAX_LINE // len(opening) - 1))
    errors = own_fowld.errors_then_status()
    assert len(errors) == 1, errors
    assert errors[0]["message"].startswith(f"line {number}: ") and "JSON" in errors[0]["message"]
    _assert_quiet(own_fowld)


def test_over_long_line_gets_one_error(own_fowld: StdioFowld):
    alive = own_fowld
    number = alive.send_line(b'{"kind": "status", "padding": "' + b"x" * (MAX_LINE + 4096) + b'"}')
    errors = alive.errors_then_status()
    assert len(errors) == 1, [e["message"] for e in errors]
    assert errors[0]["message"] == f"line {number}: longer than {MAX_LINE} bytes"
    _assert_quiet(alive)


def test_over_long_line_with_a_command_in_the_same_write(own_fowld: StdioFowld):
    """What follows an over-long line in the same read is still a command of its own."""
    alive = own_fowld
    alive.send_raw(b"y" * (2 * MAX_LINE) + b'\n{"kind": "status"}\n', 2)
    lines = alive.read_until("status")
    errors = [line for line in lines if line["kind"] == "error"]
    assert [e["message"] for e in errors] == [f"line {alive.lines_sent - 1}: longer than {MAX_LINE} bytes"]
    _assert_quiet(alive)


def test_empty_lines_are_skipped_but_counted(alive: StdioFowld):
    alive.send_line(b"")
    alive.send_line(b"   \t")
    assert alive.errors_then_status() == []
    number = alive.send_line(b"{")
    (error,) = alive.errors_then_status()
    assert error["message"].startswith(f"line {number}: invalid JSON")


def test_many_bad_lines_in_one_write_get_one_error_each(alive: StdioFowld):
    first = alive.lines_sent + 1
    burst = [b"{", b"[]", b'{"kind": "dance"}'] * 100
    alive.send_raw(b"\n".join(burst) + b"\n", len(burst))
    errors = alive.errors_then_status()
    numbers = [int(e["message"].split(":")[0].removeprefix("line ")) for e in errors]
    assert numbers == list(range(first, first + len(burst)))


def test_version_and_help():
    version = subprocess.run([sys.executable, "-m", "fowld", "--version"], capture_output=True, text=True)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"fowld {__version__}"
    usage = subprocess.run([sys.executable, "-m", "fowld", "--help"], capture_output=True, text=True)
    assert usage.returncode == 0, usage.stderr
    for option in ("--stdio", "--mailbox", "--transit-relay", "--relay-only"):
        assert option in usage.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fowld", "--code-length", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--code-length must be 1-8" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_stdin_eof_closes_and_exits_zero(mailbox, processes: ProcessGroup):
    fowld = _spawn(processes, mailbox.url)
    fowld.send_line(b'{"kind": "allocate-code"}')
    fowld.read_until("code-allocated")
    fowld.process.stdin.close()
    (closed,) = [line for line in fowld.read_until("closed") if line["kind"] == "closed"]
    assert isinstance(closed["result"], str) and closed["result"]
    assert fowld.process.wait(READ_TIMEOUT) == 0, processes.describe(fowld.process)
    fowld.drain(READ_TIMEOUT)
    assert fowld.ended and fowld.lines[-1] == closed and not fowld.bad_lines  # nothing after "closed"


@pytest.mark.parametrize("timeout", ["-1", "NaN"])
@pytest_twisted.ensureDeferred
async def test_session_close_with_a_bad_timeout_while_connected(mailbox, processes, timeout):
    """With a peer connected the timeout is used: a bad one must be an error line, not a crash."""
    fowld = _spawn(processes, mailbox.url)
    fowld.send_line(b'{"kind": "allocate-code"}')
    (allocated,) = await eventually(lambda: fowld.find("code-allocated"), "a code")
    peer = await HostilePeer.join(get_reactor(), mailbox.url, allocated["code"])
    try:
        await eventually(lambda: fowld.find("peer-connected"), "the peer seen")
        fowld.send_line(f'{{"kind": "session-close", "timeout": {timeout}}}'.encode())
        fowld.send_line(b'{"kind": "status"}')
        await eventually(lambda: fowld.find("status"), "status answered", 5.0)
        errors = fowld.find("error")
        assert len(errors) == 1 and errors[0]["message"].startswith("line 2: "), errors
        assert fowld.process.poll() is None
        _, stderr = processes.output(fowld.process)
        assert "Traceback" not in stderr, stderr
    finally:
        await peer.close()


# --- the parser and renderer on their own ------------------------------------------------


@given(st.one_of(st.text(), st.binary()))
def test_parse_command_fails_only_with_command_error(line):
    try:
        command = parse_command(line)
    except CommandError as e:
        assert str(e)
        return
    assert isinstance(command, dict) and isinstance(command["kind"], str)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_KINDS = st.sampled_from(
    ["allocate-code", "set-code", "local", "remote", "remove-local", "remove-remote", "session-close"]
    + ["ping", "status", "dance"]
)
_FIELDS = st.sampled_from(
    ["name", "code", "length", "local_listen_port", "remote_connect_port", "bind_interface", "listen"]
    + ["local_connect_port", "remote_listen_port", "connect_address", "connect", "timeout", "ping_id"]
    + ["watch"]
)


_PORTS_OF = {
    "local": ("local_listen_port", "remote_connect_port"),
    "remote": ("local_connect_port", "remote_listen_port"),
}
_TEXT_OF = {
    "set-code": ("code",),
    "local": ("name", "bind_interface"),
    "remote": ("name", "connect_address"),
    "remove-local": ("name",),
    "remove-remote": ("name",),
}


@given(_KINDS, st.dictionaries(_FIELDS, _JSON, max_size=6))
def test_parse_command_validates_the_fields_of_its_kind(kind, fields):
    line = json.dumps({"kind": kind, **fields})
    try:
        command = parse_command(line)
    except CommandError:
        return
    assert command["kind"] != "dance"
    for name in _PORTS_OF.get(kind, ()):
        port = command.get(name)
        assert port is None or (type(port) is int and 1 <= port <= 65535), command
    for name in _TEXT_OF.get(kind, ()):
        assert command.get(name) is None or isinstance(command[name], str), command


@pytest.mark.parametrize("timeout", ["-1", "NaN", "-Infinity", "1e999"])
def test_session_close_timeout_must_be_a_sane_number(timeout):
    """A negative or non-finite timeout cannot be waited for (Twisted asserts on it).

    NaN and Infinity are not JSON numbers at all, and are refused as such."""
    with pytest.raises(CommandError, match="timeout|not a number JSON allows"):
        parse_command(f'{{"kind": "session-close", "timeout": {timeout}}}')


_NAMES = st.text(max_size=30)
_IDS = st.integers(min_value=1, max_value=2**63)
_COUNTS = st.integers(min_value=0, max_value=2**63)
_DIRECTIONS = st.sampled_from(events.Direction)
_EVENTS = st.one_of(
    st.builds(events.Welcome, st.text(), st.dictionaries(st.text(), st.text() | st.integers())),
    st.builds(events.CodeAllocated, st.text()),
    st.builds(events.PeerConnected, st.text(), st.dictionaries(st.text(), st.text())),
    st.builds(events.ServiceReady, _NAMES, st.text(), st.none() | st.integers(1, 65535)),
    st.builds(events.ServiceFailed, _NAMES, st.text()),
    st.builds(events.ClientListening, _NAMES, st.text(), st.none() | st.integers(1, 65535)),
    st.builds(events.ClientFailed, _NAMES, st.text()),
    st.builds(events.ClientStopped, _NAMES, st.text()),
    st.builds(
        events.Refused, st.sampled_from(["listener", "stream", "message"]), st.none() | _NAMES, st.text()
    ),
    st.builds(events.StreamOpened, _IDS, _NAMES, _DIRECTIONS),
    st.builds(events.StreamBytes, _IDS, _COUNTS, _COUNTS),
    st.builds(
        events.StreamClosed, _IDS, _NAMES, _DIRECTIONS, _COUNTS, _COUNTS, st.none() | st.text(), st.booleans()
    ),
    st.builds(events.Error, st.text()),
    st.builds(events.Closed, st.text()),
)


@given(_EVENTS)
def test_every_event_renders_to_json_lines(event):
    lines = render_event(event)
    for line in lines:
        assert isinstance(line["kind"], str) and line["kind"]
        assert json.loads(json.dumps(line)) == line
    if isinstance(event, events.StreamBytes):
        assert sum(line["bytes"] for line in lines) == event.into_tunnel + event.out_of_tunnel
    elif isinstance(event, events.StreamClosed):
        assert lines and all(line["id"] == event.id for line in lines)
        assert any(line["kind"].endswith("-lost") for line in lines) == (event.reason is not None)
    else:
        assert len(lines) == 1


def test_status_renders_every_field():
    status = SessionStatus(phase=Phase.WAITING, mailbox=MailboxState.CONNECTED, code="7-a-b")
    rendered = render_status(status)
    assert rendered["kind"] == "status" and rendered["phase"] == "waiting" and rendered["code"] == "7-a-b"
    assert json.loads(json.dumps(rendered)) == rendered
