"""Sessions between two fowld daemons, driven over D-Bus: opened, timed step by step, closed.

A session is opened the way two users would: ``Invite`` on A returns a code,
``Accept`` on B takes it; then one byte goes through B's client listener to
A's echo server and back. Each daemon's signals are followed from before the
first call, so no change slips by, and every change is kept with the moment
it arrived: the step timings come from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon_pair import JOIN_PROFILE, SHARE_PROFILE
from target import ECHO
from twisted.internet.defer import Deferred, DeferredSemaphore, TimeoutError, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from fowlctl.bus import OBJECT_MANAGER, PROPERTIES, SESSION, Fowld

CALL_TIMEOUT = 40.0  # seconds for Invite (fowld waits up to 30 s for a code) and Accept
STEP_TIMEOUT = 30.0  # seconds for a session to reach its next step (listening, echo, closed)
_ENDED = ("closing", "closed", "failed")

T = TypeVar("T")


class SessionFailed(RuntimeError):
    """A session failed, ended early, or missed a deadline."""


class DaemonClient:
    """Our D-Bus client of one fowld, and its sessions as its signals describe them."""

    def __init__(self, key: str, pid: int, fowld: Fowld, reactor: Any):
        self.key = key
        self.pid = pid
        self.fowld = fowld
        self.signals = 0  # signals received: an idle daemon sends none
        self._reactor = reactor
        self._properties: dict[str, dict[str, Any]] = {}  # session path -> latest properties
        self._reached: dict[tuple[str, str], float] = {}  # (path, state) -> when first seen
        self._listening: dict[str, tuple[float, int]] = {}  # path -> (when first seen, port)
        self._removed: dict[str, float] = {}
        self._gone = False
        self._waiters: list[tuple[Callable[[], Any], Deferred]] = []

    async def follow(self) -> None:
        """Start following signals; call before the first session is opened."""
        await self.fowld.subscribe(self._signal, self._owner_changed)

    # what the signals say ------------------------------------------------------------------

    def _signal(self, message: Any) -> None:
        now = time.perf_counter()
        self.signals += 1
        path, body = message.path, message.body
        if message.interface == SESSION and message.member == "StateChanged":
            self._changed(path, {"State": str(body[0]), "StateReason": str(body[1])}, now)
        elif message.interface == PROPERTIES and message.member == "PropertiesChanged" and body[0] == SESSION:
            self._changed(path, body[1], now)
        elif message.interface == OBJECT_MANAGER and message.member == "InterfacesAdded":
            self._changed(str(body[0]), body[1].get(SESSION, {}), now)
        elif message.interface == OBJECT_MANAGER and message.member == "InterfacesRemoved":
            self._removed.setdefault(str(body[0]), now)
        self._check_waiters()

    def _changed(self, path: str, changes: dict[str, Any], now: float) -> None:
        self._properties.setdefault(path, {}).update(changes)
        if "State" in changes:
            self._reached.setdefault((path, str(changes["State"])), now)
        for _name, _listen, port, state in changes.get("Clients", ()):
            if state == "listening" and port:
                self._listening.setdefault(path, (now, int(port)))

    def _owner_changed(self, owner: str) -> None:
        self._gone = not owner
        self._check_waiters()

    def _alive(self, path: str) -> None:
        """Raise if the session at ``path`` (or fowld itself) has ended."""
        if self._gone:
            raise SessionFailed(f"fowld {self.key} left the bus")
        state = self._properties.get(path, {}).get("State")
        if path in self._removed or state in _ENDED:
            reason = self._properties.get(path, {}).get("StateReason", "")
            raise SessionFailed(f"fowld {self.key}: session {path} ended ({state}: {reason})")

    def reached(self, path: str, state: str) -> float | None:
        """When the session at ``path`` was first seen in ``state``."""
        return self._reached.get((path, state))

    def connected_at(self, path: str) -> float | None:
        self._alive(path)
        return self.reached(path, "connected")

    def listening(self, path: str) -> tuple[float, int] | None:
        """(when, port) once the session's client listener is up."""
        self._alive(path)
        return self._listening.get(path)

    def dilation_path(self, path: str) -> str:
        """How the session reaches its peer, as its ``Path`` property last said."""
        return str(self._properties.get(path, {}).get("Path", "unknown"))

    def removed_at(self, path: str) -> float | None:
        return self._removed.get(path)

    def forget(self, path: str) -> None:
        """Drop what is known about a session that has ended."""
        self._properties.pop(path, None)
        self._listening.pop(path, None)
        self._removed.pop(path, None)
        for key in [key for key in self._reached if key[0] == path]:
            del self._reached[key]

    # waiting ---------------------------------------------------------------------------------

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = STEP_TIMEOUT) -> Deferred:
        """Fires with ``check()``'s first value that is not None; re-checked on every signal.

        Fails with SessionFailed when ``check`` raises it or ``timeout`` passes.
        """
        d: Deferred = Deferred()
        waiter = (check, d)
        self._waiters.append(waiter)
        self._try(waiter)

        def forget(result: object) -> object:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return result

        def late(failure: Failure) -> None:
            failure.trap(TimeoutError)
            raise SessionFailed(f"fowld {self.key}: no {what} within {timeout:g} s")

        return d.addTimeout(timeout, self._reactor).addBoth(forget).addErrback(late)

    def _try(self, waiter: tuple[Callable[[], Any], Deferred]) -> None:
        check, d = waiter
        if d.called:
            return
        try:
            value = check()
        except SessionFailed as e:
            d.errback(e)
            return
        if value is not None:
            d.callback(value)

    def _check_waiters(self) -> None:
        for waiter in list(self._waiters):
            self._try(waiter)

    # calls -------------------------------------------------------------------------------------

    async def session_count(self) -> int:
        return len(await self.fowld.manager_property("Sessions"))


class _OneEcho(Protocol):
    """Sends the target's echo mode byte and one byte; done fires when that byte is back."""

    def __init__(self, done: Deferred):
        self._done = done

    def connectionMade(self) -> None:
        self.transport.write(ECHO + b"!")

    def dataReceived(self, data: bytes) -> None:
        if not self._done.called:
            self._done.callback(data[:1])
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        if not self._done.called:
            self._done.errback(SessionFailed(f"the echo connection closed first: {reason.getErrorMessage()}"))


async def first_echo(reactor: Any, port: int, timeout: float = STEP_TIMEOUT) -> None:
    """One byte through the forward on ``port`` and back, within ``timeout``."""
    done: Deferred = Deferred()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    try:
        await connectProtocol(endpoint, _OneEcho(done))
        echoed = await done.addTimeout(timeout, reactor)
    except TimeoutError:
        raise SessionFailed(f"no echo through port {port} within {timeout:g} s") from None
    except OSError as e:
        raise SessionFailed(f"cannot connect to the client listener on port {port}: {e}") from None
    if echoed != b"!":
        raise SessionFailed(f"the echo through port {port} differs: {echoed!r}")


@dataclass
class Opened:
    """A session pair: A's side, B's side, its steps in seconds after Invite was called, its route."""

    a_path: str
    b_path: str
    code: str
    port: int
    steps: dict[str, float]
    route: str  # B's Path property once connected: direct or relay


async def open_session(reactor: Any, a: DaemonClient, b: DaemonClient) -> Opened:
    """Invite on A, Accept on B, one byte echoed through B's listener; both sides connected."""
    start = time.perf_counter()
    a_path, code = await a.fowld.call_manager("Invite", "s", [SHARE_PROFILE], timeout=CALL_TIMEOUT)
    coded = time.perf_counter()
    b_path = await b.fowld.call_manager("Accept", "ss", [JOIN_PROFILE, code], timeout=CALL_TIMEOUT)
    accepted = time.perf_counter()
    listened, port = await b.wait(f"client listener for {b_path}", lambda: b.listening(b_path))
    await first_echo(reactor, port)
    echoed = time.perf_counter()
    await a.wait(f"connected state for {a_path}", lambda: a.connected_at(a_path))
    b_connected = b.reached(b_path, "connected")
    steps = {
        "code": coded - start,
        "accepted": accepted - start,
        "peer_connected": None if b_connected is None else b_connected - start,
        "listening": listened - start,
        "first_byte": echoed - start,
    }
    return Opened(a_path, b_path, code, port, steps, b.dilation_path(b_path))


async def close_session(a: DaemonClient, b: DaemonClient, opened: Opened) -> None:
    """Close the session on A (the peer's ends too) and wait until both objects are gone."""
    await a.fowld.call_session(opened.a_path, opened.a_path, "Close")
    await a.wait(f"removal of {opened.a_path}", lambda: a.removed_at(opened.a_path))
    await b.wait(f"removal of {opened.b_path}", lambda: b.removed_at(opened.b_path))
    a.forget(opened.a_path)
    b.forget(opened.b_path)


async def _bounded(jobs: list[Callable[[], Any]], parallel: int) -> list:
    """Run coroutine functions, at most ``parallel`` at once.

    After a failure no further job starts; the failure is raised once the
    running ones have ended, so none is left waiting on a daemon the caller
    is about to stop.
    """
    semaphore = DeferredSemaphore(parallel)
    failures: list[Failure] = []

    def start(job: Callable[[], Any]) -> Deferred:
        if failures:
            return succeed(None)
        return Deferred.fromCoroutine(job()).addErrback(failures.append)

    results = await gatherResults([semaphore.run(start, job) for job in jobs])
    if failures:
        failures[0].raiseException()
    return results


async def open_many(
    reactor: Any, a: DaemonClient, b: DaemonClient, count: int, parallel: int
) -> list[Opened]:
    return await _bounded([lambda: open_session(reactor, a, b)] * count, parallel)


async def close_many(a: DaemonClient, b: DaemonClient, sessions: list[Opened], parallel: int) -> None:
    await _bounded([lambda s=s: close_session(a, b, s) for s in sessions], parallel)
