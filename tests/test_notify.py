"""fowld.daemon.notify speaks sd_notify to a real AF_UNIX datagram socket, as systemd's."""

from __future__ import annotations

import os
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, task

from fowld.daemon.notify import Notifier, NotifyService, watchdog_interval
from harness.wait import datagrams

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@pytest.fixture
def clean_environment(monkeypatch):
    for name in NOTIFY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def notify_socket(tmp_path_factory, clean_environment):
    """A bound datagram socket standing in for systemd's, announced in NOTIFY_SOCKET."""
    path = str(tmp_path_factory.mktemp("notify") / "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    clean_environment.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def receive(sock: socket.socket, count: int, timeout: float = 2.0) -> list[str]:
    """Up to ``count`` datagrams, waiting at most ``timeout`` seconds in all."""
    return datagrams(sock, lambda received: len(received) >= count, timeout, fail=False)


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_life_cycle_messages(notify_socket):
    notifier = Notifier()
    notifier.ready()
    notifier.status("2 sessions\nconnected")
    before = monotonic_usec()
    notifier.reloading()
    after = monotonic_usec()
    notifier.stopping()

    ready, status, reloading, stopping = receive(notify_socket, 4)
    assert ready == "READY=1"
    assert status == "STATUS=2 sessions connected"
    first, second = reloading.split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert stopping == "STOPPING=1"


def test_without_notify_socket_nothing_fails(clean_environment):
    clean_environment.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier()
    clock = task.Clock()
    notifier.ready()
    notifier.status("running")
    notifier.reloading()
    notifier.start_watchdog(clock)
    assert clock.getDelayedCalls() == []  # no timer when no one listens
    notifier.stopping()
    notifier.stop()


def test_unreachable_notify_socket_is_ignored(tmp_path, clean_environment):
    clean_environment.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    clean_environment.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier()
    clock = task.Clock()
    notifier.ready()
    notifier.start_watchdog(clock)
    clock.advance(0.5)
    notifier.stopping()
    notifier.stop()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    assert watchdog_interval(environ, pid=4242) == expected


def test_watchdog_pings_at_half_the_timeout(notify_socket, clean_environment):
    clean_environment.setenv("WATCHDOG_USEC", "250000")
    clean_environment.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier()
    clock = task.Clock()

    notifier.start_watchdog(clock)
    assert receive(notify_socket, 1) == ["WATCHDOG=1"]  # at once, then every 0.125 s
    clock.advance(0.0625)
    assert receive(notify_socket, 1, timeout=0.05) == []
    clock.pump([0.0625] + [0.125] * 3)
    assert receive(notify_socket, 5, timeout=0.1) == ["WATCHDOG=1"] * 4

    notifier.stop()
    clock.advance(1.0)
    assert receive(notify_socket, 1, timeout=0.05) == []
    assert clock.getDelayedCalls() == []


def test_no_watchdog_for_another_process(notify_socket, clean_environment):
    clean_environment.setenv("WATCHDOG_USEC", "200000")
    clean_environment.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    notifier = Notifier()
    clock = task.Clock()
    notifier.start_watchdog(clock)
    clock.advance(1.0)
    notifier.ready()
    assert receive(notify_socket, 2, timeout=0.1) == ["READY=1"]


def test_service_feeds_watchdog_until_stopped(notify_socket, clean_environment):
    clean_environment.setenv("WATCHDOG_USEC", "1000000")
    clock = task.Clock()
    service = NotifyService(Notifier(), clock)

    service.startService()
    clock.advance(0.5)
    assert receive(notify_socket, 2) == ["WATCHDOG=1"] * 2
    service.stopService()
    clock.advance(5.0)
    assert receive(notify_socket, 2, timeout=0.1) == ["STOPPING=1"]
    assert not service.running


class Arrivals(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.seen: list[tuple[float, bytes]] = []

    def datagramReceived(self, data, addr):
        self.seen.append((time.monotonic(), data))


@pytest_twisted.inlineCallbacks
def test_watchdog_on_the_running_reactor(tmp_path_factory, clean_environment):
    path = str(tmp_path_factory.mktemp("notify") / "socket")
    arrivals = Arrivals()
    port = reactor.listenUNIXDatagram(path, arrivals)
    try:
        clean_environment.setenv("NOTIFY_SOCKET", path)
        clean_environment.setenv("WATCHDOG_USEC", "200000")
        notifier = Notifier()
        notifier.start_watchdog(reactor)
        yield task.deferLater(reactor, 0.55, lambda: None)
        notifier.stop()
        pinged = len(arrivals.seen)
        yield task.deferLater(reactor, 0.25, lambda: None)
    finally:
        yield port.stopListening()

    assert {data for _, data in arrivals.seen} == {b"WATCHDOG=1"}
    assert 3 <= pinged <= 7  # one at once, then one per 0.1 s; a busy machine may skip some
    assert len(arrivals.seen) == pinged  # none after stop()
    times = [when for when, _ in arrivals.seen]
    mean_gap = (times[-1] - times[0]) / (len(times) - 1)
    assert 0.08 < mean_gap < 0.2, times
