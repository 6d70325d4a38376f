"""One Dilated wormhole session: code, peer, Dilation status, forwarding, closing.

A ``Session`` is a Twisted ``Service``. Front ends call its methods and
subscribe to its events (``fowld.engine.events``); its state is always
described by an immutable ``SessionStatus``, its phase moves as
``lifecycle`` allows, and each forward has a frozen status of its own.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from fowld.engine import events, pairing, rules
from fowld.engine.absence import PeerAbsence
from fowld.engine.config import APP_ID, CLOSE_TIMEOUT, SessionConfig
from fowld.engine.endpoints import Address, parse_connect, parse_listen
from fowld.engine.forwarder import Forwarder, ForwardingError
from fowld.engine.lifecycle import Ending, Lifecycle, final_result, fresh_reason
from fowld.engine.observe import Subscribers, observe
from fowld.engine.status import ClientStatus, Path, Phase, ServiceStatus, SessionStatus
from fowld.wormhole import access
from fowld.wormhole.dilation import DilationOptions, close_result, failure_reason, open_dilated
from fowld.wormhole.liveness import watch_session_paths
from fowld.wormhole.status import PeerConnection, PeerState, dilation_view, mailbox_state
from fowld.wormhole.tuning import tune_dilation_connection

FORGET_MESSAGE, AWAY_MESSAGE = pairing.FORGET_MESSAGE, pairing.AWAY_MESSAGE

log = Logger()
# Slack past Dilation's expiry (two keep-alive intervals) before calling a peer silent.
SILENCE_GRACE = 1.0
# A peer that is gone will not answer our "closing": do not wait long for it.
LOST_PEER_CLOSE_TIMEOUT = 2.0


class SessionError(ValueError):
    """A request the session cannot carry out in its current state."""


class Session(Service):
    def __init__(self, config: SessionConfig | None = None, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config or SessionConfig()
        self._reactor = reactor
        self._subscribers = Subscribers()
        self._emit = self._subscribers.emit
        self._life = Lifecycle()
        self._status = SessionStatus(mailbox_url=self.config.mailbox_url)
        self._forwarder = Forwarder(reactor, self.config.limits, self._emit)
        self._wormhole = None
        self._dilated = None
        self._closed = Deferred()  # fires with the close result
        self._peer_said_closing = Deferred()
        self._ping_ids = itertools.count(1)
        self._silence_timer = None
        self._silent: PeerConnection | None = None  # the connection whose keep-alives stopped
        self._absence = PeerAbsence(reactor, self._update, self._emit)
        self._role = pairing.ROLES[1]  # "inviter" once this side allocates the code

    # observing ---------------------------------------------------------------

    @property
    def status(self) -> SessionStatus:
        return self._status

    def subscribe(self, callback: Callable[[events.Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns an unsubscribe function."""
        return self._subscribers.subscribe(callback)

    def services(self) -> tuple[ServiceStatus, ...]:
        """What this side offers, each with its state."""
        return self._forwarder.service_statuses()

    def clients(self) -> tuple[ClientStatus, ...]:
        """What this side wants from the peer, each with its state."""
        return self._forwarder.client_statuses()

    @property
    def open_streams(self) -> int:
        return self._forwarder.open_streams

    def _update(self, **changes: Any) -> None:
        status = dataclasses.replace(self._status, **changes)
        self._life.move(self._life.next_phase(status))
        reason = fresh_reason(self._status.phase, self._life.phase, "reason" in changes, status.reason)
        status = dataclasses.replace(status, phase=self._life.phase, reason=reason)
        self._absence.follow(self._life.phase)
        if status != self._status:
            self._status = status
            self._emit(events.StatusChanged(status))

    def _enter(self, phase: Phase, reason: str) -> None:
        self._life.move(phase)
        self._update(reason=reason)

    def when_closed(self) -> Deferred:
        """Fires with the close result once the session has ended."""
        return observe(self._closed)

    # life cycle --------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        config = self.config
        options = DilationOptions(config.transit_relay, config.relay_only, config.ping_interval)
        # magic-wormhole keeps this dict and encrypts it only once the key is known
        self._versions = pairing.app_versions(config.pairing)
        w, self._dilated = open_dilated(
            self._reactor,
            APP_ID,
            config.mailbox_url,
            self._versions,
            options,
            self._wormhole_status,
            self._dilation_status,
        )
        self._wormhole = w
        self._forwarder.attach(self._dilated)
        watch_session_paths(
            self._reactor,
            w,
            self._dilated,
            config.ping_interval,
            until=self.when_closed(),
            on_peer_lost=self._peer_lost if config.peer_lost_timeout else None,
            peer_timeout=config.peer_lost_timeout,
            peer_connected=lambda: self._status.peer is PeerState.CONNECTED,
        )
        w.get_welcome().addCallbacks(self._got_welcome, self._ignore_closed)
        w.get_code().addCallbacks(self._got_code, self._ignore_closed)
        w.get_unverified_key().addCallbacks(lambda _: self._emit(events.KeyAgreed()), self._ignore_closed)
        d = DeferredList([w.get_verifier(), w.get_versions()], fireOnOneErrback=True, consumeErrors=True)
        d.addCallbacks(self._got_peer, self._ignore_closed)
        self._next_message()

    def stopService(self) -> Deferred:
        super().stopService()
        return self.close()

    def allocate_code(self, length: int | None = None) -> None:
        self._claim_code()
        self._role = pairing.ROLES[0]
        self._wormhole.allocate_code(length or self.config.code_length)

    def set_code(self, code: str) -> None:
        try:
            code = rules.check_code(code)
        except rules.RuleError as e:
            raise SessionError(f"invalid code: {e}") from None
        self._claim_code()
        self._wormhole.set_code(code)

    def ask_pairing(self, request: pairing.PairingRequest) -> None:
        """Ask the peer for a pairing; only before the code is set (the versions go out with the key)."""
        if self._wormhole is None or self._life.code_claimed:
            raise SessionError("a pairing can only be asked for with the code")
        self.config = dataclasses.replace(self.config, pairing=request)
        self._versions["fowl"]["pairing"] = request.advertised()

    def _claim_code(self) -> None:
        if self._wormhole is None:
            raise SessionError("session is not started")
        if not self._life.claim_code():
            raise SessionError("this session already has a code")

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
        self._forwarder.add_service(name, address, peer_listen_port, connect_host)

    def remove_service(self, name: str) -> None:
        self._forwarder.remove_service(name)

    def add_client(self, name: str, listen: str | Address, connect_port: int | None = None) -> None:
        """Want ``name`` from the peer; we listen at ``listen`` (loopback by default)."""
        self._check_open()
        address = parse_listen(listen) if isinstance(listen, str | int) else listen
        self._forwarder.add_client(name, address, connect_port)

    def remove_client(self, name: str) -> Deferred:
        return self._forwarder.remove_client(name)

    def _check_open(self) -> None:
        if not self._life.is_open:
            raise SessionError("session is closing")

    def ping(self, timeout: float = 30.0) -> Deferred:
        """Round trip through Dilation; fires with seconds, or fails after ``timeout``."""
        if self._status.peer is not PeerState.CONNECTED:
            return fail(SessionError("not connected to a peer"))
        d = Deferred()
        ping_id = struct.pack("!I", next(self._ping_ids) & 0xFFFFFFFF)
        if not access.send_ping(self._dilated, ping_id, d.callback):
            return fail(SessionError("this magic-wormhole cannot ping the peer"))
        return d.addTimeout(timeout, self._reactor)

    # wormhole callbacks ------------------------------------------------------

    def _ignore_closed(self, failure: Failure) -> None:
        """The wormhole ended before this step; ``_message_failed`` reports why."""

    def _wormhole_status(self, status: object) -> None:
        self._update(mailbox=mailbox_state(status))

    def _dilation_status(self, status: object) -> None:
        view = dilation_view(status)
        changes: dict[str, Any] = {"mailbox": view.mailbox, "peer": view.peer, "generation": view.generation}
        self._cancel_silence_timer()
        connection = view.connection
        if connection is not None and self._silent is not None and (
            (connection.connected_at, connection.expires_at)
            == (self._silent.connected_at, self._silent.expires_at)
        ):
            # Dilation re-announces the connection we found silent (e.g. with a new
            # generation number) before it has a new one: still reconnecting.
            changes["peer"] = PeerState.RECONNECTING
        elif connection is not None:
            self._silent = None
            changes["hint"] = connection.hint
            changes["path"] = Path.RELAY if connection.relayed else Path.DIRECT
            # The manager adopts the new connection right after this callback.
            self._reactor.callLater(0, tune_dilation_connection, self._dilated)
            self._watch_for_silence(connection)
        self._update(**changes)

    def _peer_lost(self, reason: str) -> None:
        # A failure: the session ends without its peer (a supervisor may start it afresh).
        self._close(Ending(reason, Phase.FAILED), LOST_PEER_CLOSE_TIMEOUT, final=False)

    def _watch_for_silence(self, connection: PeerConnection) -> None:
        """Report a peer that stopped answering keep-alives.

        Only Dilation's leader pings and decides to reconnect; the follower hears
        the pings (each one moves ``expires_at``) but reports nothing when they
        stop. Without this, a follower whose peer vanished would say "connected"
        until the peer came back.
        """
        delay = max(0.0, connection.expires_at - self._reactor.seconds()) + SILENCE_GRACE
        self._silence_timer = self._reactor.callLater(delay, self._peer_silent, connection, delay)

    def _peer_silent(self, connection: PeerConnection, waited: float) -> None:
        self._silence_timer = None
        if self._status.peer is PeerState.CONNECTED:
            self._silent = connection
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
        if self.config.pairing is not None:
            # Agree on a pairing if both sides asked; the secret is derived here, never sent.
            secret = self._wormhole.derive_key(pairing.SECRET_PURPOSE, pairing.SECRET_BYTES)
            try:
                agreed = pairing.agree(self.config.pairing, self._role, versions, secret)
            except pairing.PairingRefused as e:
                self._emit(events.PairingDeclined(str(e)))
            else:
                self._emit(events.Paired(agreed))

    @property
    def peer_pairs(self) -> bool:  # the peer understands our forget and away messages
        return pairing.understands_pairing(self._status.peer_versions)

    def forget(self, reason: str) -> Deferred:
        """Tell the peer that this pairing is forgotten, then close for good."""
        if self._status.verifier and self.peer_pairs:
            self._send({FORGET_MESSAGE: 0})
        return self.close(reason=reason)

    def _next_message(self) -> None:
        self._wormhole.get_message().addCallbacks(self._got_message, self._message_failed)

    def _got_message(self, plaintext: bytes) -> None:
        try:
            message = json.loads(plaintext)
        except (ValueError, UnicodeDecodeError):
            message = None
        if isinstance(message, dict) and "closing" in message:
            if not self._peer_said_closing.called:
                self._peer_said_closing.callback(None)
            why = message.get("why")
            reason = "peer closed the session"
            if isinstance(why, str) and why:
                reason += f": {why[:200]}"
            self.close(reason=reason)
        elif isinstance(message, dict) and FORGET_MESSAGE in message and self.peer_pairs:
            self._emit(events.PeerForgot())
            self.close(reason="the peer forgot this pairing")
        elif isinstance(message, dict) and AWAY_MESSAGE in message and self.peer_pairs:
            self._emit(events.PeerAway())
        else:
            self._emit(events.Refused("message", None, "unknown mailbox message from peer"))
        self._next_message()

    def _message_failed(self, failure: Failure) -> None:
        """The wormhole is gone: either we closed it, or it failed under us."""
        reason = failure_reason(failure)
        if not self._life.fail(reason):
            return  # we are closing it ourselves
        self._cancel_silence_timer()
        self._update(reason=reason)
        self._emit(events.Error(reason))
        self._finish(self._forwarder.stop(reason), f"failed: {reason}")

    # closing -----------------------------------------------------------------

    def close(
        self,
        timeout: float = CLOSE_TIMEOUT,
        reason: str = "closed locally",
        final: bool = True,
        why: str | None = None,
    ) -> Deferred:
        """``final`` (a person's close): tell the peer it is over (with ``why``), wait (bounded)
        for its answer. Else (fowld stopping, a meeting replaced) a pairing peer hears "away"."""
        self._close(Ending(reason), timeout, final, why)
        return self.when_closed()

    def _send(self, message: dict) -> None:
        self._wormhole.send_message(json.dumps(message).encode("utf-8"))

    def _close(self, ending: Ending, timeout: float, final: bool = True, why: str | None = None) -> None:
        if not self._life.begin_ending(ending):
            return
        if self._wormhole is None:  # never started: nothing to tell anyone
            self._enter(Phase.CLOSED, ending.reason)
            self._closed.callback("closed")
            self._emit(events.Closed("closed"))
            return
        self._update(reason=ending.reason)
        self._cancel_silence_timer()
        stopped = self._forwarder.stop(ending.reason)
        if self._status.verifier and not final:
            if self.peer_pairs:
                self._send({AWAY_MESSAGE: 0})
            waited = self._close_wormhole()
        elif self._status.verifier:
            # the closing phase number is how many mailbox messages we sent before it: none
            self._send({"closing": 0, "why": why} if why else {"closing": 0})
            waited = Deferred()
            self._peer_said_closing.addBoth(lambda _: waited.called or waited.callback(None))
            timer = self._reactor.callLater(timeout, lambda: waited.called or waited.callback(None))
            waited.addCallback(lambda _: timer.cancel() if timer.active() else None)
            waited.addCallback(lambda _: self._close_wormhole())
        else:
            waited = self._close_wormhole()
        self._finish(DeferredList([stopped, waited]), None)

    def _close_wormhole(self) -> Deferred:
        return self._wormhole.close().addBoth(close_result)

    def _finish(self, d: Deferred, result: str | None) -> None:
        def finished(outcome: Any) -> None:
            ending = self._life.ending
            final = final_result(ending, result, outcome)
            if self._life.phase is Phase.CLOSING:
                self._enter(ending.final, ending.reason)
            self._emit(events.Closed(final))
            self._closed.callback(final)

        d.addBoth(finished)


__all__ = ["ForwardingError", "Session", "SessionConfig", "SessionError"]
