"""The engine's control logic with no network: two Forwarders over an in-memory Dilation, on a Clock.

Each side is a real ``Forwarder`` speaking the real wire protocol (``fowl-commands``
and ``fowl``) to the other through ``harness.fake_dilation``; its listeners and
local connections are in memory too (``MemoryReactor``). Time moves only when a
test moves it, so back-offs of minutes take microseconds. The supervisor's
restart back-off runs against a stand-in engine session the test ends at will.
The same behaviour over real sockets and a real mailbox is in test_forwarding.py
and test_hostile.py; these tests pin its timing and bounds exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from twisted.internet.defer import succeed

from fowld.daemon.options import SessionOptions
from fowld.daemon.profiles import Profile, RestartPolicy
from fowld.daemon.supervisor import Mode, SupervisedSession
from fowld.engine import events
from fowld.engine.endpoints import parse_connect, parse_listen
from fowld.engine.forwarder import Forwarder
from fowld.engine.lifecycle import OPEN, Ending, Lifecycle, LifecycleError
from fowld.engine.limits import Limits
from fowld.engine.observe import Subscribers
from fowld.engine.session import SessionConfig
from fowld.engine.status import ClientState, Phase, ServiceState, SessionStatus
from harness.fake_dilation import LocalTransport, MemoryReactor, dilated_pair

# --- two forwarders over an in-memory Dilation ------------------------------------------------


class Side:
    """One side's Forwarder and every event it emitted, each with the clock time it came at."""

    def __init__(self, reactor: MemoryReactor, limits: Limits):
        self._reactor = reactor
        self.timeline: list[tuple[float, Any]] = []
        self.forwarder = Forwarder(reactor, limits, self._record)

    def _record(self, event: Any) -> None:
        self.timeline.append((self._reactor.seconds(), event))

    def seen(self, kind: type) -> list[Any]:
        return [event for _, event in self.timeline if isinstance(event, kind)]

    def times(self, kind: type) -> list[float]:
        return [when for when, event in self.timeline if isinstance(event, kind)]


DEFAULT_LIMITS = Limits()


def joined(
    offering: Limits = DEFAULT_LIMITS, wanting: Limits = DEFAULT_LIMITS
) -> tuple[MemoryReactor, Side, Side]:
    """A reactor and two attached sides: the one that offers services, the one that wants them."""
    reactor = MemoryReactor()
    left, right = dilated_pair(reactor)
    service_side, client_side = Side(reactor, offering), Side(reactor, wanting)
    service_side.forwarder.attach(left)
    client_side.forwarder.attach(right)
    return reactor, service_side, client_side


def offer(side: Side, name: str, port: int = 8000) -> None:
    side.forwarder.add_service(name, parse_connect(f"tcp:localhost:{port}"))


def want(side: Side, name: str) -> None:
    side.forwarder.add_client(name, parse_listen("tcp:0"))


def next_call(reactor: MemoryReactor) -> None:
    """Move the clock to the next scheduled call and run it (and whatever it sets off now)."""
    due = min(call.getTime() for call in reactor.getDelayedCalls())
    reactor.advance(due - reactor.seconds())


def connect_locally(reactor: MemoryReactor) -> LocalTransport:
    """A local program connecting to the first client listener: its transport, to watch it."""
    transport = reactor.ports[0].connect()
    reactor.advance(0)
    return transport


def service_state(side: Side, name: str) -> ServiceState:
    return next(s.state for s in side.forwarder.service_statuses() if s.name == name)


def client_state(side: Side, name: str) -> ClientState:
    return next(c.state for c in side.forwarder.client_statuses() if c.name == name)


def test_a_refused_service_is_asked_again_with_backoff_until_removed():
    # The peer has no client "web" and no room to hold the request: it refuses at once,
    # so each gap between a refusal and the next request is exactly the back-off delay.
    reactor, service_side, client_side = joined(wanting=Limits(max_pending_requests=0))
    offer(service_side, "web")
    reactor.advance(0)
    for _ in range(9):
        next_call(reactor)
    refusals = service_side.times(events.ServiceFailed)
    requests = client_side.times(events.Refused)  # each request the peer heard, when it heard it
    assert len(refusals) == len(requests) == 10
    gaps = [asked - refused for refused, asked in zip(refusals, requests[1:], strict=False)]
    for attempt, gap in enumerate(gaps):
        base = min(2.0**attempt, 60.0)  # 1, 2, 4, ... 32, then once a minute
        assert base <= gap < base + 1.0, (attempt, gaps)  # plus up to 1 s of jitter
    assert service_state(service_side, "web") is ServiceState.FAILED
    assert "too many pending listener requests" in service_side.seen(events.ServiceFailed)[0].reason

    service_side.forwarder.remove_service("web")
    reactor.advance(600)
    assert len(client_side.times(events.Refused)) == 10  # not asked again
    assert reactor.getDelayedCalls() == []


def test_a_service_the_peer_stops_listening_for_is_asked_again_after_a_second():
    # Refused at once when not wanted, so the time of the renewed request is exact.
    reactor, service_side, client_side = joined(wanting=Limits(max_pending_requests=0))
    offer(service_side, "web")
    reactor.advance(0)  # refused: not wanted yet
    gaps = []
    for _ in range(8):  # the jitter is random: several rounds, each must keep the bounds
        want(client_side, "web")
        next_call(reactor)  # asked again, and now answered
        assert service_state(service_side, "web") is ServiceState.READY
        client_side.forwarder.remove_client("web")  # closes the control channel
        reactor.advance(0)
        assert service_side.seen(events.ServiceFailed)[-1].reason == "peer stopped listening"
        lost_at = service_side.times(events.ServiceFailed)[-1]
        asked = len(client_side.seen(events.Refused))
        next_call(reactor)
        assert len(client_side.seen(events.Refused)) == asked + 1  # the renewed request, refused
        gaps.append(client_side.times(events.Refused)[-1] - lost_at)
    assert all(1.0 <= gap < 2.0 for gap in gaps), gaps  # the schedule starts over at 1 s


def test_a_listener_request_for_an_undeclared_name_is_refused_after_the_timeout():
    reactor, service_side, client_side = joined(wanting=Limits(pending_request_timeout=30.0))
    offer(service_side, "web")
    reactor.advance(0)  # the request arrives
    reactor.advance(29.999)
    assert service_side.seen(events.ServiceFailed) == []
    assert service_state(service_side, "web") is ServiceState.REQUESTING
    reactor.advance(0.001)
    assert client_side.seen(events.Refused) == [
        events.Refused("listener", "web", "no client named 'web' is wanted here")
    ]
    assert service_side.times(events.ServiceFailed) == [30.0]
    assert reactor.ports == []


def test_a_waiting_listener_request_is_answered_as_soon_as_the_name_is_declared():
    reactor, service_side, client_side = joined(wanting=Limits(pending_request_timeout=30.0))
    offer(service_side, "web")
    reactor.advance(0)  # the request arrives and waits
    reactor.advance(10)
    want(client_side, "web")
    reactor.advance(0)
    assert client_side.times(events.ClientListening) == [10.0]
    assert service_side.times(events.ServiceReady) == [10.0]
    assert [port.listening for port in reactor.ports] == [True]
    reactor.advance(60)  # the expired timer must not refuse it afterwards
    assert client_side.seen(events.Refused) == [] and service_side.seen(events.ServiceFailed) == []
    assert client_state(client_side, "web") is ClientState.LISTENING


def test_at_most_max_pending_requests_wait_for_a_declaration():
    reactor, service_side, client_side = joined(wanting=Limits(max_pending_requests=2))
    for name in ("a", "b", "c"):
        offer(service_side, name)
    reactor.advance(0)
    assert client_side.seen(events.Refused) == [
        events.Refused("listener", "c", "too many pending listener requests")
    ]
    assert service_state(service_side, "c") is ServiceState.FAILED
    want(client_side, "a")
    want(client_side, "b")
    reactor.advance(0)
    assert [e.name for e in service_side.seen(events.ServiceReady)] == ["a", "b"]
    assert reactor.seconds() == 0


def test_a_closed_control_channel_stops_only_its_clients_listener():
    reactor, service_side, client_side = joined()
    for name in ("web", "ssh"):
        want(client_side, name)
        offer(service_side, name)
    reactor.advance(0)
    web, ssh = reactor.ports
    assert web.listening and ssh.listening
    service_side.forwarder.remove_service("web")  # closes web's control channel
    reactor.advance(0)
    withdrawn = events.ClientStopped("web", "peer withdrew the service")
    assert client_side.seen(events.ClientStopped) == [withdrawn]
    assert not web.listening and ssh.listening
    assert client_state(client_side, "web") is ClientState.WAITING
    assert client_state(client_side, "ssh") is ClientState.LISTENING


def test_the_peer_cannot_open_more_streams_than_the_limit():
    reactor, service_side, client_side = joined(offering=Limits(max_streams=2))
    want(client_side, "web")
    offer(service_side, "web")
    reactor.advance(0)
    locals_ = [connect_locally(reactor) for _ in range(3)]
    # The first two reach the service (their connections stay pending in memory); the third is refused.
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("localhost", 8000)] * 2
    assert service_side.seen(events.Refused) == [events.Refused("stream", None, "too many streams (limit 2)")]
    assert service_side.forwarder.open_streams == 2
    (closed,) = client_side.seen(events.StreamClosed)
    assert closed.refused and closed.id == 3 and "too many streams (limit 2)" in closed.reason
    assert [t.closed for t in locals_] == [False, False, True]


def test_local_connections_beyond_the_stream_limit_are_refused_here():
    reactor, service_side, client_side = joined(wanting=Limits(max_streams=1))
    want(client_side, "web")
    offer(service_side, "web")
    reactor.advance(0)
    first, second = connect_locally(reactor), connect_locally(reactor)
    assert client_side.seen(events.Refused) == [events.Refused("stream", "web", "too many streams (limit 1)")]
    assert not first.closed and second.closed
    assert client_side.forwarder.open_streams == 1 and client_side.seen(events.StreamClosed) == []
    assert len(reactor.tcpClients) == 1  # only the first reached the peer


# --- the supervisor's restart back-off -------------------------------------------------------


class StandInSession:
    """What the supervisor asks of an engine session; the test ends it instead of a mailbox."""

    open_streams = 0

    def __init__(self, config: SessionConfig, reactor: MemoryReactor):
        self.config = config
        self.started_at = reactor.seconds()
        self.status = SessionStatus(mailbox_url=config.mailbox_url)
        self._subscribers = Subscribers()
        self.subscribe = self._subscribers.subscribe
        self.code: str | None = None

    def add_service(self, *args: object) -> None: ...
    def add_client(self, *args: object) -> None: ...
    def startService(self) -> None: ...
    def services(self) -> tuple:
        return ()

    def clients(self) -> tuple:
        return ()

    def set_code(self, code: str) -> None:
        self.code = code

    def move(self, phase: Phase, reason: str = "") -> None:
        self.status = dataclasses.replace(self.status, phase=phase, reason=reason)
        self._subscribers.emit(events.StatusChanged(self.status))

    def end(self, phase: Phase, reason: str) -> None:
        self.move(phase, reason)
        self._subscribers.emit(events.Closed("failed" if phase is Phase.FAILED else "closed"))

    def close(self, timeout: float | None = None, reason: str = "closed locally") -> Any:
        self.end(Phase.CLOSED, reason)
        return succeed("closed")


def supervised(options: SessionOptions, restart: RestartPolicy = RestartPolicy.ON_FAILURE):
    reactor = MemoryReactor()
    made: list[StandInSession] = []

    def factory(config: SessionConfig, reactor: Any) -> StandInSession:
        made.append(StandInSession(config, reactor))
        return made[-1]

    profile = Profile(name="p", code="7-fixed-code", restart=restart)
    session = SupervisedSession("p-1", profile, Mode.FIXED, reactor, options, session_factory=factory)
    session.startService()
    return reactor, session, made


def test_a_failed_session_restarts_after_the_retry_delay_which_resets_once_connected():
    asked: list[int] = []

    def delay(attempt: int) -> float:
        asked.append(attempt)
        return 3.0 + 2 * attempt

    reactor, session, made = supervised(SessionOptions(retry_delay=delay))
    made[0].end(Phase.FAILED, "mailbox unreachable")
    assert session.status.phase is Phase.RECONNECTING
    assert session.status.reason == "restarting in 3 s: mailbox unreachable"
    reactor.advance(2.999)
    assert len(made) == 1
    reactor.advance(0.001)
    assert [s.started_at for s in made] == [0.0, 3.0] and made[1].code == "7-fixed-code"
    made[1].end(Phase.FAILED, "again")
    reactor.advance(5)
    made[2].move(Phase.CONNECTED)  # a session that connected starts the back-off over
    made[2].end(Phase.FAILED, "peer lost")
    reactor.advance(3)
    assert asked == [0, 1, 0] and [s.started_at for s in made] == [0.0, 3.0, 8.0, 11.0]
    assert session.restarts == 3

    made[3].end(Phase.FAILED, "once more")
    session.close()  # while waiting to restart: nothing more starts
    reactor.advance(600)
    assert len(made) == 4 and session.result == "closed" and session.status.phase is Phase.CLOSED


def test_the_default_restart_backoff_grows_by_half_up_to_five_minutes():
    reactor, session, made = supervised(SessionOptions())
    for _ in range(20):
        made[-1].end(Phase.FAILED, "unreachable")
        next_call(reactor)
    gaps = [b.started_at - a.started_at for a, b in zip(made, made[1:], strict=False)]
    for attempt, gap in enumerate(gaps):
        base = min(1.5**attempt, 300.0)
        assert base <= gap < base + 1.0, (attempt, gaps)
    assert gaps[-1] >= 300.0


def test_a_session_that_closes_cleanly_is_not_restarted_on_failure_only():
    reactor, session, made = supervised(SessionOptions(), RestartPolicy.ON_FAILURE)
    made[0].end(Phase.CLOSED, "peer closed the session")
    reactor.advance(600)
    assert len(made) == 1 and session.result == "closed"


# --- the session life cycle ------------------------------------------------------------------

ENDED = (Phase.CLOSED, Phase.FAILED)


def test_an_open_session_moves_among_open_phases_and_into_ending():
    for start in OPEN:
        for to in (*OPEN, Phase.CLOSING, *ENDED):
            life = Lifecycle()
            life.phase = start
            life.move(to)
            assert life.phase is to


@pytest.mark.parametrize(
    "start, to",
    [(Phase.CLOSING, p) for p in (*OPEN,)]
    + [(end, p) for end in ENDED for p in (*OPEN, Phase.CLOSING, *ENDED) if p is not end],
)
def test_an_ending_or_ended_session_cannot_go_back(start: Phase, to: Phase):
    life = Lifecycle()
    life.phase = start
    with pytest.raises(LifecycleError, match=f"from {start.value} to {to.value}"):
        life.move(to)
    assert life.phase is start


def test_the_first_ending_wins_and_reports_no_longer_move_the_phase():
    life = Lifecycle()
    life.move(Phase.CONNECTED)
    assert life.begin_ending(Ending("closed locally"))
    assert not life.begin_ending(Ending("peer closed the session"))
    assert not life.fail("wormhole failed")
    assert life.phase is Phase.CLOSING and life.ending == Ending("closed locally")
    assert life.next_phase(SessionStatus(code="7-a-b")) is Phase.CLOSING
    life.move(Phase.CLOSED)
    assert life.next_phase(SessionStatus()) is Phase.CLOSED


def test_a_wormhole_failure_ends_an_open_session_as_failed():
    life = Lifecycle()
    assert life.next_phase(SessionStatus(code="7-a-b")) is Phase.WAITING
    assert life.fail("mailbox gone")
    assert life.phase is Phase.FAILED and life.ending == Ending("mailbox gone", Phase.FAILED)
    assert not life.is_open and not life.begin_ending(Ending("too late"))


def test_a_session_takes_its_code_once():
    life = Lifecycle()
    assert life.claim_code() and not life.claim_code()
