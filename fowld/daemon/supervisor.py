"""One session of the daemon: an engine ``Session`` kept running as its profile asks.

A ``SupervisedSession`` is a Twisted service that outlives the engine
sessions it runs. Sessions with the profile's fixed code are supervised: when
one ends, the restart policy decides whether a new one starts, after an
exponential back-off (as ``ClientService`` does for connections). Invite and
accept sessions are one-shot, because their code is consumed: the mailbox
frees a code once two sides have met, so a new session with the same code
would wait for a peer that never comes.

Subscribers see the engine's events as if there were one session: the
status stays "reconnecting" between two engine sessions, and ``Closed`` comes
only when the session ends for good.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from fowld.daemon.connections import OpenConnections
from fowld.daemon.options import SessionOptions
from fowld.daemon.profiles import ClientSpec, Profile, RestartPolicy, ServiceSpec
from fowld.engine import events, rules
from fowld.engine.config import DEFAULT_PING_INTERVAL
from fowld.engine.endpoints import Address
from fowld.engine.forwarder import ForwardingError
from fowld.engine.observe import Subscribers, observe
from fowld.engine.session import Session, SessionConfig, SessionError
from fowld.engine.status import ClientStatus, Phase, ServiceStatus, SessionStatus
from fowld.wormhole.dilation import WRONG_CODE

log = Logger()
_ENDED = (Phase.CLOSING, Phase.CLOSED, Phase.FAILED)



class Mode(enum.Enum):
    INVITE = "invite"  # allocates a new code: one-shot
    ACCEPT = "accept"  # uses a code someone gave us: one-shot
    FIXED = "fixed"  # the profile's own code: restarted as the profile's policy says
    PAIRED = "paired"  # meets a paired peer again and again, with no code (daemon/meeting.py)


def should_restart(mode: Mode, policy: RestartPolicy, failed: bool) -> bool:
    """Whether a session that just ended starts again."""
    if mode is not Mode.FIXED:
        return False
    return policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and failed)


Subscriber = Callable[[events.Event], None]
# Makes each engine session from its config and the reactor: ``Session`` itself, unless a test
# hands in a stand-in to drive the restart policy without a mailbox.
SessionFactory = Callable[[SessionConfig, Any], Session]


class SupervisedSession(Service):
    def __init__(
        self,
        session_id: str,
        profile: Profile,
        mode: Mode,
        reactor: Any,
        options: SessionOptions | None = None,
        code: str | None = None,
        session_factory: SessionFactory = Session,
    ):
        self.setName(session_id)
        self.id = session_id
        self.profile = profile
        self.mode = mode
        self.options = options or SessionOptions()
        self.created_usec = time.time_ns() // 1000
        self.restarts = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.total_connections = 0
        self.connections = OpenConnections()
        self.status = SessionStatus(mailbox_url=profile.mailbox)
        self.session: Session | None = None
        self._reactor = reactor
        self._session_factory = session_factory
        self._code = code if mode is Mode.ACCEPT else profile.code
        self._services = {s.name: s for s in profile.services}
        self._clients = {c.name: c for c in profile.clients}
        self._subscribers = Subscribers()
        self._emit = self._subscribers.emit
        self._code_waiters: list[Deferred] = []
        self._attempt = 0  # restarts since the last successful connection, for the back-off
        self._closing = False
        self._restart_call: IDelayedCall | None = None
        self._finished: Deferred = Deferred()
        self.result: str | None = None
        self.note = ""  # shown as the reason while connected without one (e.g. about pairing)
        self._lifetime_call: IDelayedCall | None = None

    # observing ---------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.subscribe(callback)

    def _publish(self, status: SessionStatus) -> None:
        if status.phase is Phase.CONNECTED and not status.reason and self.note:
            status = dataclasses.replace(status, reason=self.note)
        if status != self.status:
            self.status = status
            self._emit(events.StatusChanged(status))

    def set_note(self, note: str) -> None:
        """What to say while connected with nothing else to say (e.g. whether a pairing was stored)."""
        self.note = note
        self._publish(self.status)

    @property
    def open_connections(self) -> int:
        return self.session.open_streams if self.session is not None else 0

    @property
    def ended(self) -> bool:
        return self._finished.called

    def when_finished(self) -> Deferred:
        """Fires with the final result once the session has ended for good."""
        return observe(self._finished)

    def wait_for_code(self, timeout: float) -> Deferred:
        """Fires with the code once known; fails if the session ends first or ``timeout`` passes."""
        if self.status.code:
            return succeed(self.status.code)
        if self.ended:
            return fail(SessionError(f"the session ended: {self.status.reason or self.result}"))
        d: Deferred = Deferred(lambda d: self._code_waiters.remove(d) if d in self._code_waiters else None)
        self._code_waiters.append(d)
        return d.addTimeout(timeout, self._reactor)

    # life cycle --------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        lifetime = self.options.lifetime or self.profile.lifetime
        if lifetime:
            self._lifetime_call = self._reactor.callLater(lifetime, self._end_of_life, lifetime)
        if self.options.join_within:
            self._reactor.callLater(self.options.join_within, self._invitation_expired)
        self._launch()

    def _invitation_expired(self) -> None:
        if not self.ended and not self.status.verifier:
            within = rules.describe_duration(self.options.join_within)
            self.close(reason=f"the invitation expired: nobody joined within {within}")

    def _end_of_life(self, lifetime: float) -> None:
        self._lifetime_call = None
        why = f"its lifetime of {rules.describe_duration(lifetime)} ended"
        self.close(reason=f"the session's lifetime of {rules.describe_duration(lifetime)} ended", why=why)

    def stopService(self) -> Deferred:
        super().stopService()
        # A one-shot session never comes back: its peer may as well end now. Sessions that
        # recur (paired, fixed code) will be back: their peer must not hear "closed for good".
        final = self.mode in (Mode.INVITE, Mode.ACCEPT)
        return self.close(reason="fowld is stopping", final=final)

    def engine_config(self, peer_lost_timeout: float | None) -> SessionConfig:
        profile = self.profile
        return SessionConfig(
            mailbox_url=profile.mailbox,
            transit_relay=profile.transit_relay or None,
            code_length=profile.code_length,
            relay_only=self.options.relay_only,
            ping_interval=self.options.ping_interval or DEFAULT_PING_INTERVAL,
            peer_lost_timeout=peer_lost_timeout,
            pairing=self.options.pairing,
        )

    def new_engine(self, config: SessionConfig, on_event: Callable[[Session, events.Event], None]) -> Session:
        """An engine session offering and wanting what this session does (not started yet)."""
        session = self._session_factory(config, self._reactor)
        session.subscribe(lambda event: on_event(session, event))
        for spec in self._services.values():
            session.add_service(spec.name, spec.connect, spec.listen_port)
        for spec in self._clients.values():
            session.add_client(spec.name, spec.listen, spec.connect_port)
        return session

    def _launch(self) -> None:
        self._restart_call = None
        profile = self.profile
        config = self.engine_config(
            # A restartable session whose peer vanished ends (as a failure) so that it can
            # start afresh and meet the restarted peer, which waits on a fresh mailbox.
            self.options.peer_lost_timeout
            if should_restart(self.mode, self.profile.restart, failed=True)
            else None
        )
        session = None
        try:
            session = self.session = self.new_engine(config, self._engine_event)
            session.startService()
            if self.mode is Mode.INVITE:
                session.allocate_code(profile.code_length)
            else:
                session.set_code(self._code)
        except Exception as e:
            # A session that cannot start would fail the same way again: end it for good.
            log.failure("session {id}: cannot start", id=self.id)
            self.session = None  # its events no longer concern us
            self._closing = True
            if session is not None:
                session.close(timeout=0)
            self._publish(dataclasses.replace(self.status, phase=Phase.FAILED, reason=f"cannot start: {e}"))
            self._finish("failed")
            return
        self._publish(session.status)

    def close(
        self,
        timeout: float | None = None,
        reason: str = "closed locally",
        final: bool = True,
        why: str | None = None,
    ) -> Deferred:
        """End the session (no restart); fires once it has ended.

        ``final`` is a person's close (the peer hears it is over, with ``why``);
        otherwise (fowld stopping) the peer is not told the session is over.
        """
        self._closing = True
        self._cancel_lifetime()
        if self._restart_call is not None:  # between two engine sessions: nothing to close
            self._restart_call.cancel()
            self._restart_call = None
            self._publish(dataclasses.replace(self.status, phase=Phase.CLOSED, reason=reason))
            self._finish("closed")
        elif self.session is not None and not self.ended:
            close_timeout = self.options.close_timeout if timeout is None else timeout
            self.session.close(timeout=close_timeout, reason=reason, final=final, why=why)
        return self.when_finished()

    def _cancel_lifetime(self) -> None:
        if self._lifetime_call is not None and self._lifetime_call.active():
            self._lifetime_call.cancel()
        self._lifetime_call = None

    def _finish(self, result: str) -> None:
        if self.ended:
            return
        self._cancel_lifetime()
        self.result = result
        waiters, self._code_waiters = self._code_waiters, []
        for waiter in waiters:
            waiter.errback(
                SessionError(f"the session ended before a code was allocated: {self.status.reason}")
            )
        self._emit(events.Closed(result))
        self._finished.callback(result)

    # engine events -----------------------------------------------------------------------------

    def _engine_event(self, session: Session, event: events.Event) -> None:
        if session is not self.session:
            return  # a late event from an engine session we already replaced
        match event:
            case events.StatusChanged(status):
                self._engine_status(status)
                return
            case events.Closed(result):
                self._engine_closed(session, result)
                return
            case events.PairingDeclined(reason):
                log.warn("session {id}: no pairing stored: {reason}", id=self.id, reason=reason)
                self.set_note(f"no pairing stored: {reason}")
            case events.CodeAllocated(code):
                waiters, self._code_waiters = self._code_waiters, []
                for waiter in waiters:
                    waiter.callback(code)
            case events.StreamOpened():
                self.total_connections += 1
            case events.StreamBytes(_, into_tunnel, out_of_tunnel):
                self.bytes_in += into_tunnel
                self.bytes_out += out_of_tunnel
        self.connections.follow(event)
        self._emit(event)

    def _engine_status(self, status: SessionStatus) -> None:
        if status.phase is Phase.CONNECTED:
            self._attempt = 0
        if status.phase in _ENDED and self._will_restart(status):
            return  # shown as "reconnecting" once the engine session has closed
        self._publish(status)

    def _will_restart(self, status: SessionStatus) -> bool:
        failed = status.phase is Phase.FAILED
        if status.reason.startswith(WRONG_CODE):
            # Someone tried a wrong code: never offer it another guess. A person decides.
            return False
        return not self._closing and should_restart(self.mode, self.profile.restart, failed)

    def _engine_closed(self, session: Session, result: str) -> None:
        self.connections.clear()
        status = session.status
        reason = status.reason or result
        if not self._will_restart(status):
            self._finish(result)
            return
        delay = self.options.retry_delay(self._attempt)
        self._attempt += 1
        log.warn("session {id} restarts in {delay:.1f} s: {reason}", id=self.id, delay=delay, reason=reason)
        self._publish(
            dataclasses.replace(
                status, phase=Phase.RECONNECTING, reason=f"restarting in {delay:.0f} s: {reason}"
            )
        )
        self._restart_call = self._reactor.callLater(delay, self._relaunch)

    def _relaunch(self) -> None:
        self.restarts += 1
        self._launch()

    # forwarding --------------------------------------------------------------------------------

    @property
    def services(self) -> list[ServiceSpec]:
        """What this session offers: the profile's services plus those added since."""
        return list(self._services.values())

    @property
    def clients(self) -> list[ClientSpec]:
        return list(self._clients.values())

    def service_statuses(self) -> tuple[ServiceStatus, ...]:
        """Each service with the state the latest engine session gives it (requesting before one does)."""
        known = {s.name: s for s in self.session.services()} if self.session is not None else {}
        specs = self._services.values()
        return tuple(
            dataclasses.replace(known.get(spec.name, ServiceStatus(spec.name, "")), connect=spec.connect.spec)
            for spec in specs
        )

    def client_statuses(self) -> tuple[ClientStatus, ...]:
        """Each client with the state the latest engine session gives it (waiting before one does)."""
        known = {c.name: c for c in self.session.clients()} if self.session is not None else {}
        specs = self._clients.values()
        return tuple(known.get(spec.name) or ClientStatus(spec.name, spec.listen.spec) for spec in specs)

    @property
    def live_session(self) -> Session | None:
        """The engine session that takes changes now; None between two engine sessions."""
        if self.session is None or self._restart_call is not None or self.ended:
            return None
        return self.session

    def add_service(self, name: str, connect: Address) -> None:
        """Offer ``name`` from now on, in this and every later engine session."""
        if name in self._services:
            raise ForwardingError(f"service {name!r} already exists")
        if live := self.live_session:
            live.add_service(name, connect)
        self._services[name] = ServiceSpec(name, connect)

    def remove_service(self, name: str) -> None:
        if name not in self._services:
            raise ForwardingError(f"no service named {name!r}")
        live = self.live_session
        if live is not None and any(s.name == name for s in live.services()):
            live.remove_service(name)
        del self._services[name]

    def add_client(self, name: str, listen: Address) -> None:
        """Want ``name`` from now on, in this and every later engine session."""
        if name in self._clients:
            raise ForwardingError(f"client {name!r} already exists")
        if live := self.live_session:
            live.add_client(name, listen)
        self._clients[name] = ClientSpec(name, listen)

    def remove_client(self, name: str) -> Deferred:
        if name not in self._clients:
            raise ForwardingError(f"no client named {name!r}")
        del self._clients[name]
        live = self.live_session
        if live is not None and any(c.name == name for c in live.clients()):
            return live.remove_client(name)
        return succeed(None)

    def ping(self, timeout: float = 10.0) -> Deferred:
        """Round trip to the peer in seconds."""
        live = self.live_session
        if live is None:
            return fail(SessionError("not connected to a peer"))
        return live.ping(timeout=timeout)
