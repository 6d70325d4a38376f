"""Each contained fix to magic-wormhole, checked on the library's real classes.

Every probe runs against the *original* behaviour too, so that a release
which fixes a bug itself shows up here as a patch no longer needed.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from wormhole._boss import Boss
from wormhole._dilation.connection import DilatedConnectionProtocol
from wormhole._dilation.connector import Connector
from wormhole._dilation.inbound import Inbound

from fowld.wormhole import patches


@pytest.fixture(autouse=True)
def installed() -> tuple[str, ...]:
    return patches.install()


def test_this_release_is_one_the_fixes_were_written_for() -> None:
    assert patches.supported_release()
    assert not patches.supported_release("0.25.0")
    # conftest offers loopback only, so by now every fix is in place
    assert set(patches.applied()) == {p.name for p in patches.PATCHES}


def test_install_twice_changes_nothing() -> None:
    before = (DilatedConnectionProtocol.pauseProducing, Inbound.subchannel_closed)
    assert patches.install() == patches.applied()
    assert (DilatedConnectionProtocol.pauseProducing, Inbound.subchannel_closed) == before


class _Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")


def test_pause_connection_reaches_the_tcp_transport() -> None:
    protocol = object.__new__(DilatedConnectionProtocol)
    protocol.transport = _Transport()
    protocol.pauseProducing()
    protocol.resumeProducing()
    assert protocol.transport.calls == ["pause", "resume"]
    protocol.transport = None
    protocol.pauseProducing()  # between connections: nothing to pause, no error


def _inbound_with_paused_subchannel() -> tuple[Inbound, object, _Transport]:
    inbound = object.__new__(Inbound)
    connection = _Transport()
    inbound._open_subchannels, inbound._paused_subchannels, inbound._connection = {}, set(), connection
    subchannel = object()
    inbound._open_subchannels[7] = subchannel
    inbound.subchannel_pauseProducing(subchannel)
    return inbound, subchannel, connection


def test_original_inbound_keeps_a_closed_paused_subchannel() -> None:
    # the bug the patch exists for, on the library's own code
    inbound, subchannel, _ = _inbound_with_paused_subchannel()
    patches._original_subchannel_closed(inbound, 7, subchannel)
    assert subchannel in inbound._paused_subchannels


def test_a_closed_paused_subchannel_is_forgotten_and_the_connection_resumes() -> None:
    inbound, subchannel, connection = _inbound_with_paused_subchannel()
    inbound.subchannel_closed(7, subchannel)
    assert subchannel not in inbound._paused_subchannels
    assert connection.calls == ["pause", "resume"]


def test_a_closed_boss_ignores_a_late_closed() -> None:
    # The transition exists: adding it again is refused by automat.
    closed_state, closed_input = Boss.__dict__["S4_closed"], Boss.__dict__["closed"]
    with pytest.raises(ValueError):
        closed_state.upon(closed_input, enter=closed_state, outputs=[])


def test_direct_addresses_narrow_the_hints_and_can_be_lifted() -> None:
    connector = SimpleNamespace()
    try:
        patches.advertise_direct_addresses(["192.0.2.1", "127.0.0.1"])
        assert Connector._get_listener_addresses(connector) == ["192.0.2.1", "127.0.0.1"]
        patches.advertise_direct_addresses(None)
        assert Connector._get_listener_addresses(connector) == patches._original_listener_addresses(connector)
    finally:
        patches.advertise_direct_addresses(["127.0.0.1"])  # as conftest set it for the whole run
