"""The embedded mailbox and the real test servers, exercised by real clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import pytest_twisted
import wormhole
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol

from fowld.engine.endpoints import EndpointError
from fowld.mailbox import EmbeddedMailbox, mailbox_url, start_embedded_mailbox
from harness.servers import STOP_TIMEOUT, ProcessGroup, free_port, read_line, wait_for_port
from harness.wait import get_reactor

APPID = "meejah.ca/wormhole/forward"
STEP_TIMEOUT = 5.0  # seconds for any one wormhole step on loopback
CODE = re.compile(r"^\d+-[a-z]+-[a-z]+$")
URL = re.compile(r"^ws://127\.0\.0\.1:(\d+)/v1$")


def _within(d, seconds: float = STEP_TIMEOUT):
    return d.addTimeout(seconds, get_reactor())


async def _exchange(url: str) -> tuple[str, bytes, bytes]:
    """Two wormholes meet on ``url`` and swap a message each way; returns (code, got1, got2)."""
    reactor = get_reactor()
    first = wormhole.create(APPID, url, reactor)
    second = wormhole.create(APPID, url, reactor)
    try:
        first.allocate_code()
        code = await _within(first.get_code())
        second.set_code(code)
        first.send_message(b"from first")
        second.send_message(b"from second")
        got_by_second = await _within(second.get_message())
        got_by_first = await _within(first.get_message())
    except Exception:
        for w in (first, second):
            w.close().addErrback(lambda _: None)  # the first error is the one to report
        raise
    for w in (first, second):
        await _within(w.close())
    return code, got_by_first, got_by_second


class _NoticesClose(Protocol):
    def __init__(self):
        self.closed = Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


def _ipv6_loopback_available() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


# --- the embedded mailbox -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 4000, "ws://127.0.0.1:4000/v1"),
        ("::1", 4001, "ws://[::1]:4001/v1"),
        ("0.0.0.0", 4002, "ws://127.0.0.1:4002/v1"),
        ("::", 4003, "ws://[::1]:4003/v1"),
        ("192.0.2.7", 80, "ws://192.0.2.7:80/v1"),
    ],
)
def test_mailbox_url_brackets_ipv6_and_names_loopback_for_wildcards(host, port, expected):
    assert mailbox_url(host, port) == expected


def test_embedded_mailbox_refuses_a_unix_socket():
    with pytest.raises(EndpointError, match="over TCP"):
        EmbeddedMailbox(get_reactor(), "unix:path=mailbox.sock")


@pytest_twisted.ensureDeferred
async def test_embedded_mailbox_relays_between_two_wormholes():
    mailbox = await start_embedded_mailbox(get_reactor(), "tcp:0")
    try:
        port = int(URL.match(mailbox.url).group(1))
        assert port > 0
        code, got_by_first, got_by_second = await _exchange(mailbox.url)
    finally:
        await mailbox.stop()
    assert CODE.match(code), code
    assert (got_by_first, got_by_second) == (b"from second", b"from first")


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
@pytest_twisted.ensureDeferred
async def test_embedded_mailbox_on_ipv6_loopback():
    mailbox = await start_embedded_mailbox(get_reactor(), "[::1]:0")
    try:
        assert re.match(r"^ws://\[::1\]:\d+/v1$", mailbox.url), mailbox.url
        _, got_by_first, _ = await _exchange(mailbox.url)
    finally:
        await mailbox.stop()
    assert got_by_first == b"from second"


@pytest_twisted.ensureDeferred
async def test_stopped_embedded_mailbox_closes_its_port():
    reactor = get_reactor()
    mailbox = await start_embedded_mailbox(reactor, "tcp:0")
    port = int(URL.match(mailbox.url).group(1))
    client = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=STEP_TIMEOUT)
    idle = await _within(client.connect(Factory.forProtocol(_NoticesClose)))
    await mailbox.stop()
    assert mailbox.url is None
    # A client that never opened a channel is dropped too, not left on a stopped server.
    await _within(idle.closed)
    with pytest.raises(ConnectionRefusedError):
        await _within(client.connect(Factory.forProtocol(Protocol)))


@pytest_twisted.ensureDeferred
async def test_embedded_mailbox_reports_a_port_in_use():
    reactor = get_reactor()
    first = await start_embedded_mailbox(reactor, "tcp:0")
    port = int(URL.match(first.url).group(1))
    try:
        with pytest.raises(CannotListenError, match="already in use"):
            await start_embedded_mailbox(reactor, f"tcp:{port}")
    finally:
        await first.stop()


def test_mailbox_module_prints_its_url_and_stops_on_sigterm(processes: ProcessGroup):
    process = processes.spawn(
        [sys.executable, "-m", "fowld.mailbox", "--listen", "tcp:0"], stdout=subprocess.PIPE
    )
    url = read_line(process.stdout, timeout=10).decode().strip()
    match = URL.match(url)
    assert match, url
    wait_for_port("127.0.0.1", int(match.group(1)), timeout=5, process=process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(STOP_TIMEOUT) == 0, processes.describe(process)


def test_mailbox_module_explains_a_bad_listen_address():
    result = subprocess.run(
        [sys.executable, "-m", "fowld.mailbox", "--listen", "unix:path=mailbox.sock"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "over TCP" in result.stderr
    assert "Traceback" not in result.stderr


# --- the subprocess servers -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mailbox_server_relays_between_two_wormholes(mailbox):
    assert mailbox.url == f"ws://127.0.0.1:{mailbox.port}/v1"
    code, got_by_first, got_by_second = await _exchange(mailbox.url)
    assert CODE.match(code), code
    assert (got_by_first, got_by_second) == (b"from second", b"from first")


def test_fresh_mailbox_restarts_on_the_same_port(fresh_mailbox):
    first = fresh_mailbox()
    assert first.stop() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first.port), timeout=1).close()
    second = fresh_mailbox(port=first.port)
    assert second.pid != first.pid
    wait_for_port("127.0.0.1", second.port, timeout=1, process=second.process)


def test_transit_relay_pairs_two_clients(transit_relay):
    assert transit_relay.hint == f"tcp:127.0.0.1:{transit_relay.port}"
    token = os.urandom(32).hex()
    ends = [socket.create_connection(("127.0.0.1", transit_relay.port), timeout=5) for _ in "ab"]
    try:
        for end in ends:
            end.sendall(f"please relay {token} for side {os.urandom(8).hex()}\n".encode())
        assert [end.recv(3) for end in ends] == [b"ok\n", b"ok\n"]
        ends[0].sendall(b"through the relay")
        assert ends[1].recv(100) == b"through the relay"
    finally:
        for end in ends:
            end.close()


def test_dbus_bus_answers_list_names(dbus_bus):
    assert dbus_bus.address.startswith("unix:path=")
    result = subprocess.run(
        [
            "busctl",
            f"--address={dbus_bus.address}",
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "ListNames",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert '"org.freedesktop.DBus"' in result.stdout
    dbus_bus.stop()
    assert dbus_bus.process.poll() is not None


def test_process_group_kills_what_ignores_sigterm(processes: ProcessGroup):
    stubborn = processes.spawn(
        [
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert read_line(stubborn.stdout, timeout=10) == b"ready\n"
    assert processes.stop(stubborn, timeout=0.5) == -signal.SIGKILL
