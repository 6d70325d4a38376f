"""One Dilated wormhole session: code, peer, Dilation status, forwarding, closing.

A ``Session`` is a Twisted ``Service``. Front ends call its methods and
subscribe to its events (``fowld.engine.events``); its state is always described by
an immutable ``SessionStatus``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from wormhole import _status as wstatus
from wormhole import create as create_wormhole
from wormhole.errors import LonelyError, WrongPasswordError

from fowld.engine import events
from fowld.engine.config import APP_ID, DEFAULT_MAILBOX, DEFAULT_PING_INTERVAL, DEFAULT_TRANSIT_RELAY
from fowld.engine.endpoints import Address, parse_connect, parse_listen
from fowld.engine.forwarder import Forwarder, ForwardingError
from fowld.engine.limits import Limits
from fowld.engine.observe import Subscribers, observe
from fowld.engine.status import MailboxState, Path, PeerState, Phase, SessionStatus
from fowld.wormhole import patches as compat
from fowld.wormhole.liveness import watch_session_paths
from fowld.wormhole.tuning import tune_dilation_connection

FEATURES = ("core-v1",)
APP_VERSIONS = {"fowl": {"features": list(FEATURES)}}

log = Logger()
compat.install()

_MAILBOX_STATES = {
    wstatus.Disconnected: MailboxState.DISCONNECTED,
    wstatus.Connecting: MailboxState.CONNECTING,
    wstatus.Connected: MailboxState.CONNECTED,
    wstatus.Failed: MailboxState.FAILED,
    wstatus.Closed: MailboxState.CLOSED,
}
_PEER_STATES = {
    wstatus.NoPeer: PeerState.NONE,
    wstatus.ConnectingPeer: PeerState.CONNECTING,
    wstatus.ConnectedPeer: PeerState.CONNECTED,
    wstatus.ReconnectingPeer: PeerState.RECONNECTING,
    wstatus.StoppedPeer: PeerState.STOPPED,
}
_FINAL = (Phase.CLOSED, Phase.FAILED)
# Slack past Dilation's expiry (two keep-alive intervals) before calling a peer silent.
SILENCE_GRACE = 1.0


class SessionError(ValueError):
    """A request the session cannot carry out in its current state."""


@dataclass(frozen=True)
class SessionConfig:
    mailbox_url: str = DEFAULT_MAILBOX
    transit_relay: str | None = DEFAULT_TRANSIT_RELAY
    code_length: int = 2
    relay_only: bool = False  # never offer or use direct connections (Dilation no_listen)
    ping_interval: float = DEFAULT_PING_INTERVAL  # Dilation's keep-alive
    # end the session after this long without any peer connection (None: never)
    peer_lost_timeout: float | None = None
    limits: Limits = field(default_factory=Limits)


def _phase_for(status: SessionStatus) -> Phase:
    if status.peer is PeerState.CONNECTED:
        return Phase.CONNECTED
    if status.peer is PeerState.RECONNECTING:
        return Phase.RECONNECTING
    if status.peer is PeerState.CONNECTING or status.verifier:
        return Phase.CONNECTING
    if status.code:
        return Phase.WAITING
    return Phase.STARTING


class Session(Service):
    def __init__(self, config: SessionConfig | None = None, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config or SessionConfig()
        self._reactor = reactor
        self._subscribers = Subscribers()
        self._emit = self._subscribers.emit
        self._status = SessionStatus(mailbox_url=self.config.mailbox_url)
        self.forwarder = Forwarder(reactor, self.config.limits, self._emit)
        self._wormhole = None
        self._dilated = None
        self._code_requested = False
        self._closing: Deferred | None = None
        self._closed = Deferred()
        self._peer_closing = Deferred()
        self._ping_ids = itertools.count(1)
        self._silence_timer = None
        self._silent_connection: tuple[float, float] | None = None  # (connected_at, expires_at)
        self._lost_peer = False

    # observing ---------------------------------------------------------------

    @property
    def status(self) -> SessionStatus:
        return self._status

    def subscribe(self, callback: Callable[[events.Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns an unsubscribe function."""
        return self._subscribers.subscribe(callback)

    def _update(self, **changes: Any) -> None:
        status = dataclasses.replace(self._status, **changes)
        if status.phase not in _FINAL and status.phase is not Phase.CLOSING:
            status = dataclasses.replace(status, phase=_phase_for(status))
        if status != self._status:
            self._status = status
            self._emit(events.StatusChanged(status))

    def when_closed(self) -> Deferred:
        """Fires with the close result once the session has ended."""
        return observe(self._closed)

    # life cycle --------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        w = create_wormhole(
            APP_ID,
            self.config.mailbox_url,
            self._reactor,
            versions=APP_VERSIONS,
            dilation=True,
            on_status_update=self._wormhole_status,
        )
        self._wormhole = w
        self._dilated = w.dilate(
            transit_relay_location=self.config.transit_relay,
            no_listen=self.config.relay_only,
            on_status_update=self._dilation_status,
            ping_interval=self.config.ping_interval or DEFAULT_PING_INTERVAL,
        )
        self.forwarder.attach(self._dilated)
        watch_session_paths(
            self._reactor,
            w,
            self._dilated,
            self.config.ping_interval or DEFAULT_PING_INTERVAL,
            until=self.when_closed(),
            on_peer_lost=self._peer_lost if self.config.peer_lost_timeout else None,
            peer_timeout=self.config.peer_lost_timeout,
            peer_connected=lambda: self._status.peer is PeerState.CONNECTED,
        )
        w.get_welcome().addCallbacks(self._got_welcome, self._ignore_closed)
        w.get_code().addCallbacks(self._got_code, self._ignore_closed)
        d = DeferredList([w.get_verifier(), w.get_versions()], fireOnOneErrback=True, consumeErrors=True)
        d.addCallbacks(self._got_peer, self._ignore_closed)
        self._next_message()

    def stopService(self) -> Deferred:
        super().stopService()
        return self.close()

    def allocate_code(self, length: int | None = None) -> None:
        self._claim_code()
        self._wormhole.allocate_code(length or self.config.code_length)

    def set_code(self, code: str) -> None:
        if not isinstance(code, str) or "-" not in code or not code.split("-", 1)[0].isdigit():
            raise SessionError(f"invalid code {code!r}: expected NUMBER-word-word")
        self._claim_code()
        self._wormhole.set_code(code.strip())

    def _claim_code(self) -> None:
        if self._wormhole is None:
            raise SessionError("session is not started")
        if self._code_requested:
            raise SessionError("this session already has a code")
        self._code_requested = True

    # forwarding --------------------------------------------------------------

    def add_service(
        self,
        name: str,
        connect: str | Address | None,
        peer_listen_port: int | None = None,
        connect_host: str | None = None,
    ) -> None:
        """Offer ``name`` to the peer; its streams end at ``connect``."""
        self._check_open()
        address = parse_connect(connect) if isinstance(connect, str | int) else connect
        self.forwarder.add_service(name, address, peer_listen_port, connect_host)

    def remove_service(self, name: str) -> None:
        self.forwarder.remove_service(name)

    def add_client(self, name: str, listen: str | Address, connect_port: int | None = None) -> None:
        """Want ``name`` from the peer; we listen at ``listen`` (loopback by default)."""
        self._check_open()
        address = parse_listen(listen) if isinstance(listen, str | int) else listen
        self.forwarder.add_client(name, address, connect_port)

    def remove_client(self, name: str) -> Deferred:
        return self.forwarder.remove_client(name)

    def _check_open(self) -> None:
        if self._closing is not None:
            raise SessionError("session is closing")

    def ping(self, timeout: float = 30.0) -> Deferred:
        """Round trip through Dilation; fires with seconds, or fails after ``timeout``."""
        manager = getattr(self._dilated, "_manager", None)
        if manager is None or self._status.peer is not PeerState.CONNECTED:
            return fail(SessionError("not connected to a peer"))
        d = Deferred()
        ping_id = struct.pack("!I", next(self._ping_ids) & 0xFFFFFFFF)
        manager.send_ping(ping_id, d.callback)
        return d.addTimeout(timeout, self._reactor)

    # wormhole callbacks ------------------------------------------------------

    def _ignore_closed(self, failure: Failure) -> None:
        """The wormhole ended before this step; ``_message_failed`` reports why."""

    def _wormhole_status(self, status: wstatus.WormholeStatus) -> None:
        self._update(mailbox=_MAILBOX_STATES.get(type(status.mailbox_connection), MailboxState.DISCONNECTED))

    def _dilation_status(self, status: wstatus.DilationStatus) -> None:
        peer = status.peer_connection
        changes: dict[str, Any] = {
            "mailbox": _MAILBOX_STATES.get(
                type(status.mailbox.mailbox_connection), MailboxState.DISCONNECTED
            ),
            "peer": _PEER_STATES.get(type(peer), PeerState.NONE),
            "generation": status.generation,
        }
        self._cancel_silence_timer()
        if isinstance(peer, wstatus.ConnectedPeer) and self._silent_connection == (
            peer.connected_at,
            peer.expires_at,
        ):
            # Dilation re-announces the connection we found silent (e.g. with a new
            # generation number) before it has a new one: still reconnecting.
            changes["peer"] = PeerState.RECONNECTING
        elif isinstance(peer, wstatus.ConnectedPeer):
            self._silent_connection = None
            changes["hint"] = peer.hint_description
            changes["path"] = Path.RELAY if "relay" in peer.hint_description else Path.DIRECT
            # The manager adopts the new connection right after this callback.
            self._reactor.callLater(0, tune_dilation_connection, self._dilated)
            self._watch_for_silence(peer)
        self._update(**changes)

    def _peer_lost(self, reason: str) -> None:
        # A failure: the session ends without its peer (a supervisor may start it afresh).
        # Nobody will answer our "closing", so do not wait long for it.
        self._lost_peer = True
        self.close(timeout=2.0, reason=reason)

    def _watch_for_silence(self, peer: wstatus.ConnectedPeer) -> None:
        """Report a peer that stopped answering keep-alives.

        Only Dilation's leader pings and decides to reconnect; the follower hears
        the pings (each one moves ``expires_at``) but reports nothing when they
        stop. Without this, a follower whose peer vanished would say "connected"
        until the peer came back.
        """
        delay = max(0.0, peer.expires_at - self._reactor.seconds()) + SILENCE_GRACE
        self._silence_timer = self._reactor.callLater(delay, self._peer_silent, peer, delay)

    def _peer_silent(self, peer: wstatus.ConnectedPeer, waited: float) -> None:
        self._silence_timer = None
        if self._status.peer is PeerState.CONNECTED:
            self._silent_connection = (peer.connected_at, peer.expires_at)
            reason = f"no keep-alive from the peer for {waited:.0f} s"
            self._update(peer=PeerState.RECONNECTING, reason=reason)

    def _cancel_silence_timer(self) -> None:
        if self._silence_timer is not None and self._silence_timer.active():
            self._silence_timer.cancel()
        self._silence_timer = None

    def _got_welcome(self, welcome: dict) -> None:
        self._emit(events.Welcome(self.config.mailbox_url, welcome))

    def _got_code(self, code: str) -> None:
        self._update(code=code)
        self._emit(events.CodeAllocated(code))

    def _got_peer(self, results: list) -> None:
        (_, verifier), (_, versions) = results
        verifier_hex = verifier.hex()
        versions = versions if isinstance(versions, dict) else {}
        self._update(verifier=verifier_hex, peer_versions=versions)
        self._emit(events.PeerConnected(verifier_hex, versions))

    def _next_message(self) -> None:
        self._wormhole.get_message().addCallbacks(self._got_message, self._message_failed)

    def _got_message(self, plaintext: bytes) -> None:
        try:
            message = json.loads(plaintext)
        except (ValueError, UnicodeDecodeError):
            message = None
        if isinstance(message, dict) and "closing" in message:
            self._peer_closing.callback(None) if not self._peer_closing.called else None
            if self._closing is None:
                self.close(reason="peer closed the session")
        else:
            self._emit(events.Refused("message", None, "unknown mailbox message from peer"))
        self._next_message()

    def _message_failed(self, failure: Failure) -> None:
        """The wormhole is gone: either we closed it, or it failed under us."""
        if self._closing is not None:
            return
        if failure.check(WrongPasswordError):
            reason = "wrong code: the peer used a different code (or someone guessed wrong)"
        elif failure.check(LonelyError):
            reason = "no peer ever connected"
        else:
            reason = failure.getErrorMessage() or failure.type.__name__
        self._closing = Deferred()
        self._cancel_silence_timer()
        self._update(phase=Phase.FAILED, reason=reason)
        self._emit(events.Error(reason))
        self._finish(self.forwarder.stop(), f"failed: {reason}")

    # closing -----------------------------------------------------------------

    def close(self, timeout: float = 10.0, reason: str = "closed locally") -> Deferred:
        """Close gracefully: tell the peer, wait (bounded) for its answer, close the wormhole."""
        if self._closing is not None:
            return self.when_closed()
        self._closing = Deferred()
        if self._wormhole is None:
            self._update(phase=Phase.CLOSED, reason=reason)
            self._closed.callback("closed")
            self._emit(events.Closed("closed"))
            return self.when_closed()
        self._update(phase=Phase.CLOSING, reason=reason)
        self._cancel_silence_timer()
        stopped = self.forwarder.stop()
        if self._status.verifier:
            # the closing phase number is how many mailbox messages we sent before it: none
            self._wormhole.send_message(json.dumps({"closing": 0}).encode("utf-8"))
            waited = Deferred()
            self._peer_closing.addBoth(lambda _: waited.callback(None) if not waited.called else None)
            timer = self._reactor.callLater(timeout, lambda: waited.called or waited.callback(None))
            waited.addCallback(lambda _: timer.cancel() if timer.active() else None)
            waited.addCallback(lambda _: self._close_wormhole())
        else:
            waited = self._close_wormhole()
        self._finish(DeferredList([stopped, waited]), None)
        return self.when_closed()

    def _close_wormhole(self) -> Deferred:
        d = self._wormhole.close()

        def done(result: Any) -> str:
            if isinstance(result, Failure):
                if result.check(LonelyError):
                    return "lonely"
                return result.getErrorMessage() or result.type.__name__
            return str(result)

        return d.addBoth(done)

    def _finish(self, d: Deferred, result: str | None) -> None:
        def finished(outcome: Any) -> None:
            final = result
            if final is None:
                final = "happy"
                if isinstance(outcome, list) and outcome and outcome[-1][0]:
                    final = outcome[-1][1] or "happy"
            if self._lost_peer:
                self._update(phase=Phase.FAILED)
            elif self._status.phase is not Phase.FAILED:
                self._update(phase=Phase.CLOSED)
            self._emit(events.Closed(final))
            self._closed.callback(final)

        d.addBoth(finished)


__all__ = ["Session", "SessionConfig", "SessionError", "ForwardingError"]
