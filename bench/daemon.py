"""Daemon benchmark: what one fowld costs per idle session, and how fast an invite forwards a byte.

Starts, on loopback, a mailbox server, a transit relay, an echo server
(bench/target.py) and two private D-Bus buses with a fowld daemon on each,
then drives them over D-Bus as two users would: Invite on A, Accept on B.
Side A's profile ``share`` offers the service ``echo``, which ends at the
target; side B's profile ``join`` wants ``echo`` on a free loopback port.

1. Invite → first byte: on freshly started daemons, ``--runs`` times: from
   calling Invite on A to one byte echoed through B's client listener, with
   the steps on the way; each session is closed before the next.
2. Footprint: on another fresh pair, resident memory, CPU time, wakeups and
   file descriptors of both daemons (harness.stats) with no session, then
   with each count of ``--sessions`` idle connected sessions, measured over
   an idle window; then a few invite → first byte runs beside the idle
   sessions, and the same readings once every session is closed.

Each daemon's signals are followed from before the first call, so no change
slips by, and every change is kept with the moment it arrived: the step
timings come from there. Results are plain dicts of numbers that go straight
to JSON; report.py renders them.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
from twisted.internet.defer import Deferred, DeferredSemaphore, TimeoutError, gatherResults, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from bench import traffic
from fowlctl.bus import OBJECT_MANAGER, PROPERTIES, SESSION, Fowld
from fowlctl.errors import CtlError
from harness import servers
from harness.fowld import daemon_env, spawn_fowld, write_profile
from harness.stats import idle_usage, sample

T = TypeVar("T")


SHARE_PROFILE = "share"
JOIN_PROFILE = "join"
SERVICE = "echo"
READY_TIMEOUT = 15.0  # seconds for a fresh fowld to own its bus name
CALL_TIMEOUT = 40.0  # seconds for Invite (fowld waits up to 30 s for a code) and Accept
STEP_TIMEOUT = 30.0  # seconds for a session to reach its next step (listening, echo, closed)
_RETRY = 0.1  # seconds between two looks for the bus name
_ENDED = ("closing", "closed", "failed")


# --- two fowlds, each on a bus of its own -------------------------------------------------


class SetupError(RuntimeError):
    """A daemon did not start; the message carries the end of its log."""


def share_profile(mailbox_url: str, relay_hint: str, target_port: int) -> str:
    return (
        "description: offer the benchmark's echo server\n"
        f"mailbox: {mailbox_url}\n"
        f"transit-relay: {relay_hint}\n"
        "services:\n"
        f"  - name: {SERVICE}\n"
        f"    connect: tcp:127.0.0.1:{target_port}\n"
    )


def join_profile(mailbox_url: str, relay_hint: str) -> str:
    return (
        "description: reach the peer's echo server on a free local port\n"
        f"mailbox: {mailbox_url}\n"
        f"transit-relay: {relay_hint}\n"
        "clients:\n"
        f"  - name: {SERVICE}\n"
        "    listen: tcp:0:interface=127.0.0.1\n"
    )


@dataclass
class Side:
    key: str  # "A" or "B"
    bus: servers.DBusBus
    config: Path  # XDG_CONFIG_HOME; profiles in fowl/profiles/
    process: subprocess.Popen | None = None
    fowld: Fowld | None = None  # our D-Bus connection to it while it runs

    @property
    def pid(self) -> int:
        assert self.process is not None, f"fowld {self.key} is not running"
        return self.process.pid


def make_side(
    group: servers.ProcessGroup, key: str, bus_dir: Path, config: Path, profile: str, text: str
) -> Side:
    """Start the side's bus and write its profile (fowld itself starts later)."""
    bus_dir.mkdir(parents=True, exist_ok=True)
    bus = servers.start_dbus_bus(group, bus_dir)
    write_profile(config / "fowl" / "profiles", profile, text)
    return Side(key, bus, config)


async def start_fowld(
    reactor: Any, group: servers.ProcessGroup, side: Side, options: tuple[str, ...] = ()
) -> None:
    """Spawn the side's fowld (with command-line ``options``); connect once it owns its bus name."""
    env = daemon_env(side.bus.address, side.config, PATH="/usr/local/bin:/usr/bin:/bin")
    side.process = spawn_fowld(group, *options, env=env, name=f"fowld-{side.key}")
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / _RETRY) + 2):  # bounded by count and by time
        if side.process.poll() is not None:
            raise SetupError(
                f"fowld {side.key} exited with code {side.process.returncode}\n{group.describe(side.process)}"
            )
        try:
            side.fowld = await Fowld.connect(reactor, side.bus.address)
            return
        except CtlError as e:
            if time.monotonic() > deadline:
                raise SetupError(
                    f"fowld {side.key} is not on its bus after {READY_TIMEOUT:g} s: {e}"
                ) from None
        await deferLater(reactor, _RETRY)
    raise SetupError(f"fowld {side.key} is not on its bus after {READY_TIMEOUT:g} s")


def stop_fowld(group: servers.ProcessGroup, side: Side) -> None:
    """Disconnect from the side's fowld and end it by its PID (SIGTERM, then SIGKILL)."""
    if side.fowld is not None:
        side.fowld.disconnect()
        side.fowld = None
    if side.process is not None:
        group.stop(side.process)
        side.process = None


def out_of_files(group: servers.ProcessGroup, side: Side) -> str | None:
    """What happened, if the side's fowld ran out of file descriptors (EMFILE in its log)."""
    if side.process is None:
        return None
    _, err = group.output(side.process)
    line = next((line.strip() for line in err.splitlines() if "[Errno 24]" in line), None)
    if line is None:
        return None
    try:
        process = psutil.Process(side.pid)
        fds, soft = process.num_fds(), process.rlimit(psutil.RLIMIT_NOFILE)[0]
    except psutil.Error:
        fds, soft = "?", "?"
    return f"fowld {side.key} ran out of file descriptors ({fds} open, soft limit {soft}): {line}"


# --- sessions driven over D-Bus ---------------------------------------------------------------


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
    # the measuring side's own check, on a thread so the reactor goes on counting signals
    await deferToThread(traffic.first_echo, (servers.LOOPBACK, port))
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


# --- the phases ---------------------------------------------------------------------------------


FAILURES = (SessionFailed, SetupError, CtlError, traffic.TransferError, OSError, psutil.Error)


@dataclass(frozen=True)
class Config:
    sessions: tuple[int, ...] = (1, 50, 200)
    runs: int = 20  # invite → first byte on fresh daemons
    loaded_runs: int = 5  # the same beside the most idle sessions
    idle_window: float = 30.0  # seconds: several keep-alive intervals of every session
    settle: float = 5.0  # seconds after opening sessions before the window starts
    parallel: int = 10  # sessions opened or closed at once
    ping_interval: float | None = None  # fowld --ping-interval; None: fowld's default

    @property
    def fowld_options(self) -> tuple[str, ...]:
        return () if self.ping_interval is None else ("--ping-interval", f"{self.ping_interval:g}")


QUICK = Config(sessions=(1, 3), runs=2, loaded_runs=1, idle_window=2.0, settle=1.0)


class PhaseFailed(RuntimeError):
    """One phase of the benchmark failed; the message says what and, where known, why."""


def medians(runs: list[dict[str, float | None]]) -> dict[str, float]:
    """The median of each step over the runs that saw it."""
    found: dict[str, float] = {}
    for step in runs[0] if runs else ():
        values = [run[step] for run in runs if run[step] is not None]
        if values:
            found[step] = statistics.median(values)
    return found


async def time_runs(reactor: Any, a: DaemonClient, b: DaemonClient, runs: int, label: str) -> dict:
    """Open, time and close ``runs`` sessions one after the other."""
    steps = []
    routes = []
    for _ in range(runs):
        opened = await open_session(reactor, a, b)
        steps.append(opened.steps)
        routes.append(opened.route)
        await close_session(a, b, opened)
    return {
        "label": label,
        "runs": steps,
        "run_routes": routes,
        "median": medians(steps),
        "routes": dict(Counter(routes)),
    }


async def idle_reading(
    reactor: Any, clients: tuple[DaemonClient, ...], sessions: int, config: Config
) -> dict:
    """Both daemons over one idle window, once they hold exactly ``sessions`` sessions."""
    await deferLater(reactor, config.settle)
    for client in clients:
        count = await client.session_count()
        if count != sessions:
            raise SessionFailed(f"fowld {client.key} holds {count} sessions, {sessions} expected")
    signals = {client.key: client.signals for client in clients}
    before = {client.key: sample(client.pid) for client in clients}
    await deferLater(reactor, config.idle_window)
    reading: dict = {"sessions": sessions}
    for client in clients:
        after = sample(client.pid)
        reading[client.key] = {
            "sample": after.as_dict(),
            "idle": idle_usage(before[client.key], after),
            "signals": client.signals - signals[client.key],
        }
    return reading


async def measure_latency(
    reactor: Any, a: DaemonClient, b: DaemonClient, config: Config, results: dict
) -> None:
    """Invite → first byte on daemons that run nothing else."""
    label = "fresh, no other session"
    results["latency"]["fresh"] = await time_runs(reactor, a, b, config.runs, label)


async def measure_footprint(
    reactor: Any, a: DaemonClient, b: DaemonClient, config: Config, results: dict
) -> None:
    """Idle readings at each session count, invite → first byte beside them, then after closing all."""
    footprint = results["footprint"]
    footprint["levels"] = levels = [await idle_reading(reactor, (a, b), 0, config)]
    footprint["open_s"] = {}
    opened: list[Opened] = []
    for count in config.sessions:
        started = time.monotonic()
        opened += await open_many(reactor, a, b, count - len(opened), config.parallel)
        footprint["open_s"][str(count)] = time.monotonic() - started
        levels.append(await idle_reading(reactor, (a, b), count, config))
    footprint["routes"] = dict(Counter(session.route for session in opened))
    if config.loaded_runs:
        label = f"beside {len(opened)} idle sessions"
        results["latency"]["loaded"] = await time_runs(reactor, a, b, config.loaded_runs, label)
    await close_many(a, b, opened, config.parallel)
    footprint["after_close"] = await idle_reading(reactor, (a, b), 0, config)


Phase = Callable[[Any, DaemonClient, DaemonClient, Config, dict], Awaitable[None]]


async def with_fresh_daemons(
    reactor: Any,
    group: servers.ProcessGroup,
    sides: tuple[Side, Side],
    phase: Phase,
    config: Config,
    results: dict,
) -> None:
    """Start both fowlds, run ``phase`` against them, stop them (also on failure)."""
    try:
        clients = []
        for side in sides:
            await start_fowld(reactor, group, side, config.fowld_options)
            client = DaemonClient(side.key, side.pid, side.fowld, reactor)
            await client.follow()
            clients.append(client)
        await phase(reactor, *clients, config, results)
    except FAILURES as e:
        causes = [cause for side in sides if (cause := out_of_files(group, side))]
        raise PhaseFailed("; ".join([f"{type(e).__name__}: {e}", *causes])) from e
    finally:
        for side in sides:
            stop_fowld(group, side)


async def measure(
    reactor: Any, group: servers.ProcessGroup, sides: tuple[Side, Side], config: Config, results: dict
) -> None:
    """Every phase in turn; a phase that fails is noted in ``results["errors"]`` and the next runs."""
    phases: tuple[tuple[str, Phase], ...] = (
        ("invite → first byte", measure_latency),
        ("footprint", measure_footprint),
    )
    for name, phase in phases:
        try:
            await with_fresh_daemons(reactor, group, sides, phase, config, results)
        except PhaseFailed as e:
            results["errors"].append(f"{name}: {e}")


def run_in_reactor(work: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``work(reactor)`` to the end; KeyboardInterrupt if a signal stopped the reactor first."""
    from twisted.internet import reactor

    outcome: list = []

    def start() -> None:
        d = Deferred.fromCoroutine(work(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if not outcome:
        raise KeyboardInterrupt
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()


def run(config: Config, facts: dict, log_dir: Path) -> dict:
    """Both phases on fresh daemon pairs; ``facts`` are the machine's."""
    results: dict = {
        "benchmark": "daemon",
        "machine": facts,
        "config": asdict(config),
        "footprint": {},
        "latency": {},
        "errors": [],
    }
    group = servers.ProcessGroup(log_dir)
    root = Path(tempfile.mkdtemp(prefix="fowld-db-"))  # short: the bus sockets live here
    try:
        mailbox = servers.start_mailbox(group)
        relay = servers.start_transit_relay(group)
        target_port = traffic.start_target(group)
        a_profile = share_profile(mailbox.url, relay.hint, target_port)
        b_profile = join_profile(mailbox.url, relay.hint)
        sides = (
            make_side(group, "A", root / "a-bus", root / "a", SHARE_PROFILE, a_profile),
            make_side(group, "B", root / "b-bus", root / "b", JOIN_PROFILE, b_profile),
        )
        run_in_reactor(lambda reactor: measure(reactor, group, sides, config, results))
    finally:
        group.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return results
