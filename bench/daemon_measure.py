"""What the daemon benchmark measures, phase by phase, each on a freshly started pair of fowlds.

Results are plain dicts of numbers (seconds, KiB, ticks) that go straight to
JSON; daemon_report.py renders them.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daemon_pair import SetupError, Side, out_of_files, start_fowld, stop_fowld
from daemon_sessions import (
    DaemonClient,
    Opened,
    SessionFailed,
    close_many,
    close_session,
    open_many,
    open_session,
)
from daemon_stats import idle_usage, sample
from helpers import servers
from twisted.internet.task import deferLater

from fowlctl.errors import CtlError

FAILURES = (SessionFailed, SetupError, CtlError, OSError)


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
