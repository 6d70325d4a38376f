"""Noticing dead network paths, so Dilation replaces them instead of waiting on TCP.

magic-wormhole 0.24 leaves four gaps that a moved laptop or a dead peer falls into:

1. A TCP connection whose local address was removed (new DHCP lease, network
   change) stays ESTABLISHED for many minutes of retransmissions. This holds
   for the Dilation connection and for the mailbox WebSocket; while the latter
   is stuck, reconnection requests between the peers never arrive. We abort
   such connections: Dilation forms a new generation and the mailbox
   connection is re-established from the new address.
2. When Dilation gives up on a path it calls ``loseConnection()``, which waits
   until Twisted's write buffer drains: never, on a dead path. We abort a
   connection still closing after ``CLOSE_GRACE``. Nothing is lost: Dilation
   replays unacknowledged records on the next generation.
3. The mailbox WebSocket pings every 30 s and waits 60 s for the answer,
   whatever Dilation's interval. We use Dilation's rule for it too: a ping
   every interval, dead when the answer is one interval late.
4. A peer that died never says so. With no working peer connection (none at
   all, or one the session found silent) for ``peer_timeout`` seconds we call
   ``on_peer_lost`` once, so the owner can end the session and free its
   listeners (or start afresh to meet a restarted peer).

Removed addresses (gap 1) are learnt from the kernel the moment they go
(``netlink``: one socket per process); each connection on such an address
is confirmed gone with one ``bind()`` of a throwaway socket (the address may
live on elsewhere) and aborted. Where netlink is refused, every connection's
address is probed that way once a second instead. The other checks run once
a second, for every session of the process from one timer, and cost a few
attribute reads. magic-wormhole's private attributes are reached through
``access``; if they change shape the checks degrade to doing nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from fowld.wormhole.access import dilation_ever_connected, dilation_transport, mailbox_protocol
from fowld.wormhole.netlink import AddressMonitor, open_address_monitor

log = Logger()

CHECK_INTERVAL = 1.0  # seconds between checks
CLOSE_GRACE = 2.0  # seconds a peer connection may take to close before it is aborted
PEER_TIMEOUT_INTERVALS = 10  # default peer_timeout, in ping intervals (300 s by default)


def address_is_local(host: str, scope_id: int = 0) -> bool:
    """True if ``host`` is still assigned to this machine (it can be bound to)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address: tuple = (host, 0, 0, scope_id) if family == socket.AF_INET6 else (host, 0)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind(address)
    except OSError as e:
        return e.errno != errno.EADDRNOTAVAIL
    return True


def _same_address(host: str, other: str) -> bool:
    """Whether two textual addresses are one (scope suffixes and IPv4-mapped forms aside)."""
    try:
        a, b = (ipaddress.ip_address(h.split("%", 1)[0]) for h in (host, other))
    except ValueError:
        return False
    a, b = (getattr(x, "ipv4_mapped", None) or x for x in (a, b))
    return a == b


def transport_address_gone(transport: Any, removed: str | None = None) -> str | None:
    """The local address of ``transport`` if it no longer exists here, else None.

    With ``removed`` (an address the kernel said was deleted), only a transport on
    that address is probed.
    """
    try:
        local = transport.getHost()
    except (AttributeError, OSError):
        return None
    host = getattr(local, "host", None)
    if not isinstance(host, str) or (removed is not None and not _same_address(host, removed)):
        return None
    if address_is_local(host, getattr(local, "scopeID", 0) or 0):
        return None
    return host


class _Schedule:
    """One timer and one address monitor per reactor serve every session: a daemon holding
    hundreds of sessions wakes once a second, not once per session per second."""

    def __init__(self, reactor: Any):
        self.reactor = reactor
        self._watched: dict[int, Liveness] = {}
        self._loop = LoopingCall(self._check_all)
        self._loop.clock = reactor
        self._monitor: AddressMonitor | None = None

    def add(self, liveness: Liveness) -> None:
        self._watched[id(liveness)] = liveness
        if not self._loop.running:
            self._monitor = open_address_monitor(self.reactor, self._address_removed, self._probe_all)
            self._loop.start(CHECK_INTERVAL, now=False)

    def discard(self, liveness: Liveness) -> None:
        self._watched.pop(id(liveness), None)
        if not self._watched and self._loop.running:
            self._loop.stop()
            if self._monitor is not None:
                self._monitor.close()
                self._monitor = None

    @property
    def notified(self) -> bool:
        """Whether address removals are notified (else each check probes every address)."""
        return self._monitor is not None

    def _check_all(self) -> None:
        probe = self._monitor is None
        for liveness in list(self._watched.values()):
            liveness.check(probe_addresses=probe)

    def _address_removed(self, address: str) -> None:
        for liveness in list(self._watched.values()):
            liveness.drop_paths_on(address)

    def _probe_all(self) -> None:
        log.info("address notifications overran: probing every connection's address")
        for liveness in list(self._watched.values()):
            liveness.drop_paths_on(None)


_schedules: dict[int, _Schedule] = {}


def _schedule_for(reactor: Any) -> _Schedule:
    schedule = _schedules.get(id(reactor))
    if schedule is None or schedule.reactor is not reactor:  # ids of dead objects are reused
        schedule = _schedules[id(reactor)] = _Schedule(reactor)
    return schedule


class Liveness(Service):
    """Watches one session's peer connection and mailbox connection; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        wormhole: Any,
        dilated: Any,
        ping_interval: float,
        peer_timeout: float | None = None,
        on_peer_lost: Callable[[str], object] | None = None,
        peer_connected: Callable[[], bool] = lambda: True,
    ):
        self._reactor = reactor
        self._peer_connected = peer_connected  # the session's view: False once the peer went silent
        self._wormhole = wormhole
        self._dilated = dilated
        self.ping_interval = ping_interval
        self.peer_timeout = peer_timeout or PEER_TIMEOUT_INTERVALS * self.ping_interval
        self._on_peer_lost = on_peer_lost
        self._peer_lost_reported = False
        self._down_since: float | None = None  # no usable peer connection since then
        self._closing: tuple[Any, float] | None = None  # (transport, first seen closing at)
        self._tuned_websocket: Any = None  # the mailbox connection we last adjusted

    def startService(self) -> None:
        super().startService()
        _schedule_for(self._reactor).add(self)

    def stopService(self) -> None:
        super().stopService()
        _schedule_for(self._reactor).discard(self)

    def check(self, probe_addresses: bool = True) -> None:
        try:
            now = self._reactor.seconds()
            self._check_mailbox(probe_addresses)
            transport = dilation_transport(self._dilated)
            usable = (
                transport is not None
                and self._check_dilation(transport, now, probe_addresses)
                and self._peer_connected()
            )
            self._check_peer(usable, now)
        except Exception:
            # a failed check must not end the LoopingCall: later checks may still work
            log.failure("path check failed")

    def drop_paths_on(self, removed: str | None) -> None:
        """Abort our connections whose local address is gone: ``removed``, or any if None."""
        try:
            self._drop_mailbox_if_gone(removed)
            transport = dilation_transport(self._dilated)
            if transport is not None:
                self._drop_dilation_if_gone(transport, removed)
        except Exception:
            log.failure("address check failed")

    # mailbox -----------------------------------------------------------------

    def _check_mailbox(self, probe_address: bool) -> None:
        protocol = mailbox_protocol(self._wormhole)
        if getattr(protocol, "transport", None) is None:
            return
        self._tune_websocket_pings(protocol)
        if probe_address:
            self._drop_mailbox_if_gone(None)

    def _drop_mailbox_if_gone(self, removed: str | None) -> None:
        transport = getattr(mailbox_protocol(self._wormhole), "transport", None)
        gone = None if transport is None else transport_address_gone(transport, removed)
        if gone is not None:
            log.warn("local address {address} is gone: reconnecting to the mailbox", address=gone)
            transport.abortConnection()

    def _tune_websocket_pings(self, protocol: Any) -> None:
        """Apply the ping rule to this connection and, through its factory, to the next ones."""
        if protocol is self._tuned_websocket:
            return
        self._tuned_websocket = protocol
        options = {"autoPingInterval": self.ping_interval, "autoPingTimeout": self.ping_interval}
        factory = getattr(protocol, "factory", None)
        if hasattr(factory, "setProtocolOptions"):
            factory.setProtocolOptions(**options)
        # read again after the next pong, so this takes effect from the second ping on
        for name, value in options.items():
            setattr(protocol, name, value)

    # peer connection ---------------------------------------------------------

    def _check_dilation(self, transport: Any, now: float, probe_address: bool) -> bool:
        """Abort the peer connection if its path is dead; True if it is still usable."""
        if probe_address and self._drop_dilation_if_gone(transport, None):
            return False
        if not getattr(transport, "disconnecting", False):
            self._closing = None
            return True
        if self._closing is None or self._closing[0] is not transport:
            self._closing = (transport, now)
        elif now - self._closing[1] >= CLOSE_GRACE:
            log.warn("peer connection still closing after {grace:.0f} s: dropping it", grace=CLOSE_GRACE)
            transport.abortConnection()
            self._closing = None
        return False

    def _drop_dilation_if_gone(self, transport: Any, removed: str | None) -> bool:
        gone = transport_address_gone(transport, removed)
        if gone is None:
            return False
        log.warn("local address {address} is gone: replacing the peer connection", address=gone)
        transport.abortConnection()
        return True

    def _check_peer(self, usable: bool, now: float) -> None:
        if usable or not dilation_ever_connected(self._dilated):
            self._down_since = None
            return
        if self._down_since is None:
            self._down_since = now
            return
        if self._on_peer_lost is None:
            return  # nobody gives up on this peer: an outage is only reported as one
        if now - self._down_since >= self.peer_timeout and not self._peer_lost_reported:
            self._peer_lost_reported = True
            reason = f"peer lost: no connection to the peer for {self.peer_timeout:.0f} s"
            log.warn(reason)
            if self._on_peer_lost is not None:
                self._on_peer_lost(reason)


def watch_session_paths(
    reactor: Any,
    wormhole: Any,
    dilated: Any,
    ping_interval: float,
    until: Deferred,
    on_peer_lost: Callable[[str], object] | None = None,
    peer_timeout: float | None = None,
    peer_connected: Callable[[], bool] = lambda: True,
) -> Liveness:
    """Start a ``Liveness`` for one session; it stops by itself when ``until`` fires."""
    liveness = Liveness(reactor, wormhole, dilated, ping_interval, peer_timeout, on_peer_lost, peer_connected)
    liveness.startService()

    def stop(result: object) -> object:
        liveness.stopService()
        return result

    until.addBoth(stop)
    return liveness
