"""Unit tests of fowld.wormhole.liveness's peer-lost rule, on a test clock."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.task import Clock

from fowld.wormhole.liveness import Liveness


class FakeTransport:
    """A live local TCP end on loopback (an address this machine always has)."""

    disconnecting = False

    def getHost(self) -> SimpleNamespace:
        return SimpleNamespace(host="127.0.0.1")

    def abortConnection(self) -> None:
        raise AssertionError("a connection on a live address was aborted")


def dilated_with(connection: object | None) -> SimpleNamespace:
    manager = SimpleNamespace(_connection=connection, _made_first_connection=True)
    return SimpleNamespace(_manager=manager)


def watch(dilated, lost, peer_connected=lambda: True) -> tuple[Clock, Liveness]:
    clock = Clock()
    liveness = Liveness(
        clock, SimpleNamespace(), dilated, 1.0, 10.0, lost.append, peer_connected=peer_connected
    )
    liveness.startService()
    return clock, liveness


def test_no_connection_for_the_timeout_reports_the_peer_lost_once():
    lost: list[str] = []
    dilated = dilated_with(None)
    clock, liveness = watch(dilated, lost)
    clock.pump([1.0] * 10)
    assert lost == []
    clock.pump([1.0] * 2)
    assert lost == ["peer lost: no connection to the peer for 10 s"]
    clock.pump([1.0] * 30)
    assert len(lost) == 1
    liveness.stopService()


def test_a_connection_back_in_time_restarts_the_count():
    lost: list[str] = []
    dilated = dilated_with(None)
    clock, liveness = watch(dilated, lost)
    clock.pump([1.0] * 8)
    dilated._manager._connection = SimpleNamespace(transport=FakeTransport())
    clock.pump([1.0] * 5)
    dilated._manager._connection = None
    clock.pump([1.0] * 8)
    assert lost == []
    liveness.stopService()


def test_a_connection_the_session_found_silent_does_not_count_as_working():
    lost: list[str] = []
    dilated = dilated_with(SimpleNamespace(transport=FakeTransport()))
    silent = {"yes": False}
    clock, liveness = watch(dilated, lost, peer_connected=lambda: not silent["yes"])
    clock.pump([1.0] * 20)
    assert lost == []
    silent["yes"] = True  # Dilation's follower: the TCP connection is up, the pings stopped
    clock.pump([1.0] * 12)
    assert lost == ["peer lost: no connection to the peer for 10 s"]
    liveness.stopService()
