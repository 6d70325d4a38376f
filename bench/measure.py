"""What the benchmark measures, interleaved across paths, and how daemon pairs are profiled.

Repeated measurements take turns between the paths (raw, ours, upstream,
raw, ours, ...) so that a change in machine load during the run affects every
path alike and the side-by-side ratios stay fair. Results are plain dicts of
numbers (seconds, bytes, MB/s) that go straight to JSON; report.py renders them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import daemons
import hotspots
import traffic
from helpers import servers

MB = 1_000_000  # throughput is in decimal megabytes per second
_MIN_CPU = 0.2  # seconds; less is too coarse to report per byte or per round trip
_ATTACH_DELAY = 0.5  # seconds for py-spy to attach before the profiled traffic starts
FAILURES = (daemons.DaemonError, traffic.TransferError, OSError, hotspots.ProfileError)


@dataclass(frozen=True)
class Config:
    round_trips: int = 1000
    message_size: int = 40
    echo_budget: float = 120.0  # seconds; a path with 88 ms round trips stops early
    bulk_bytes: int = 200 * MB
    transfers: int = 5  # rounds of single-stream and of parallel transfers; medians count
    streams: int = 8
    stream_bytes: int = 25 * MB
    setup_runs: int = 5
    profile_bytes: int = 1000 * MB  # long enough for a few thousand samples per daemon
    profile_round_trips: int = 5000  # bounded by profile_echo_budget
    profile_echo_budget: float = 10.0

    def transfer_timeout(self, size: int) -> float:
        return 60.0 + size / (5 * MB)  # generous: slower than 5 MB/s means something is broken


@dataclass
class Route:
    """One way to reach the target: directly, or through a daemon pair's forward."""

    key: str
    label: str
    address: traffic.Address
    forward: daemons.Forward | None = None

    @property
    def daemons(self) -> tuple[daemons.Daemon, ...]:
        return self.forward.daemons if self.forward else ()


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(len(ordered) * fraction, 9)))  # round: 0.07 * 100 is 7.000000000000001
    return ordered[rank - 1]


def round_trips(address: traffic.Address, config: Config, count: int, budget: float) -> dict:
    times = traffic.round_trips(address, count, config.message_size, budget)
    return {"count": len(times), "median_s": statistics.median(times), "p99_s": percentile(times, 0.99)}


def _rate(size: int, seconds: float) -> dict:
    return {"bytes": size, "seconds": seconds, "mb_per_s": size / MB / seconds}


def _cpu(route: Route) -> float | None:
    """CPU seconds both daemons of ``route`` used so far; None without daemons or /proc."""
    used = [daemon.cpu_seconds() for daemon in route.daemons]
    return None if not used or None in used else sum(used)


def _enough_cpu(before: float | None, after: float | None) -> bool:
    """Whether a CPU-time difference is worth reporting: /proc counts in 10 ms ticks."""
    return before is not None and after is not None and after - before >= _MIN_CPU


def _echo_block(
    route: Route, config: Config, block: int, times: list[float], cpu: list[float | None]
) -> None:
    """Block ``block`` of ``config.transfers`` blocks of round trips: adds to ``times`` and ``cpu[0]``."""
    blocks = config.transfers
    count = config.round_trips // blocks + (block < config.round_trips % blocks)
    budget = config.echo_budget / blocks
    before = _cpu(route)
    times += traffic.round_trips(route.address, count, config.message_size, budget)
    after = _cpu(route)
    cpu[0] = None if before is None or after is None or cpu[0] is None else cpu[0] + after - before


def _echo_result(times: list[float], cpu: float | None) -> dict:
    result = {"count": len(times), "median_s": statistics.median(times), "p99_s": percentile(times, 0.99)}
    if _enough_cpu(0.0, cpu):
        result["daemon_cpu_s_per_round_trip"] = cpu / len(times)
    return result


def _single(route: Route, config: Config, round_number: int) -> dict:
    marks = [daemon.mark() for daemon in route.daemons]
    cpu = _cpu(route)
    payload = traffic.Payload(config.bulk_bytes, seed=1 + round_number)
    result = _rate(payload.size, traffic.transfer(route.address, payload))
    if route.daemons:  # upstream prints a JSON line per chunk; ours coalesces byte reports
        result["stdout_lines"] = sum(d.mark() - m for d, m in zip(route.daemons, marks, strict=True))
        after = _cpu(route)
        if _enough_cpu(cpu, after):
            # CPU per byte hardly depends on other load on the machine, unlike MB/s
            result["daemon_cpu_s_per_gb"] = (after - cpu) / (payload.size / 1e9)
    return result


def _parallel(route: Route, config: Config, round_number: int) -> dict:
    payloads = [
        traffic.Payload(config.stream_bytes, seed=1000 * round_number + i) for i in range(config.streams)
    ]
    total = sum(payload.size for payload in payloads)
    return _rate(total, traffic.parallel_transfer(route.address, payloads, config.transfer_timeout(total)))


def measure_traffic(routes: list[Route], config: Config) -> dict[str, dict]:
    """Round trips, then ``config.transfers`` rounds of single and parallel transfers, in turns.

    A route that fails gets an ``error`` and drops out; the others go on.
    """
    results: dict[str, dict] = {route.key: {"label": route.label} for route in routes}
    live = list(routes)

    def each(step: Callable[[Route], None]) -> None:
        for route in list(live):
            try:
                step(route)
            except FAILURES as e:
                results[route.key]["error"] = f"{type(e).__name__}: {e}"
                live.remove(route)

    # round trips in blocks, taking turns like the transfers: a change in load hits every path
    echo_times: dict[str, list[float]] = {route.key: [] for route in routes}
    echo_cpu: dict[str, list[float | None]] = {route.key: [0.0] for route in routes}
    for block in range(config.transfers):
        each(lambda r, b=block: _echo_block(r, config, b, echo_times[r.key], echo_cpu[r.key]))
    for route in live:
        results[route.key]["round_trip"] = _echo_result(echo_times[route.key], echo_cpu[route.key][0])
    singles: dict[str, list[dict]] = {route.key: [] for route in routes}
    parallels: dict[str, list[dict]] = {route.key: [] for route in routes}
    for number in range(config.transfers):
        each(lambda r, n=number: singles[r.key].append(_single(r, config, n)))
        each(lambda r, n=number: parallels[r.key].append(_parallel(r, config, n)))
    for route in live:
        runs = singles[route.key]
        results[route.key]["single"] = {
            "bytes": config.bulk_bytes,
            "mb_per_s": statistics.median(run["mb_per_s"] for run in runs),
            "runs": runs,
        }
        if route.daemons:
            lines = statistics.median(run["stdout_lines"] for run in runs)
            results[route.key]["single"]["stdout_lines_per_transfer"] = round(lines)
            cpu = [run["daemon_cpu_s_per_gb"] for run in runs if "daemon_cpu_s_per_gb" in run]
            if cpu:
                results[route.key]["single"]["daemon_cpu_s_per_gb"] = statistics.median(cpu)
        results[route.key]["parallel"] = {
            "streams": config.streams,
            "bytes_each": config.stream_bytes,
            "mb_per_s": statistics.median(run["mb_per_s"] for run in parallels[route.key]),
            "runs": parallels[route.key],
        }
        results[route.key]["sha256_checked"] = config.transfers * (1 + config.streams)
    return results


def time_setups(
    open_forward: Callable[[daemons.Implementation], daemons.Forward],
    implementations: list[daemons.Implementation],
    first: dict[str, dict],
    runs: int,
) -> dict[str, dict]:
    """Start and stop fresh pairs, implementations in turns, until each has ``runs`` timings.

    ``first`` holds the timings of the pairs already opened for traffic.
    """
    timings = {key: [t] for key, t in first.items()}
    failed: dict[str, str] = {}
    for _ in range(runs - 1):
        for implementation in implementations:
            if implementation.key in failed:
                continue
            try:
                forward = open_forward(implementation)
            except FAILURES as e:
                failed[implementation.key] = f"{type(e).__name__}: {e}"
                continue
            forward.stop()
            timings[implementation.key].append(forward.timings)
    return {
        key: {
            "runs": runs,
            "median_s": statistics.median(run["usable"] for run in runs),
            "best_s": min(run["usable"] for run in runs),  # the run least disturbed by other load
            "error": failed.get(key),
        }
        for key, runs in timings.items()
    }


def _profiled(
    group: servers.ProcessGroup, forward: daemons.Forward, out: Path, phase: str, action: Callable[[], dict]
) -> dict:
    """Run ``action`` with py-spy on both daemons; its result plus each daemon's grouped samples."""
    out.mkdir(parents=True, exist_ok=True)
    key = forward.implementation.key
    samplers = {
        role: hotspots.Sampler(group, daemon.pid, out / f"{key}-{phase}-{role}.txt", f"{key}-{role}")
        for role, daemon in (("client", forward.client), ("service", forward.service))
    }
    try:
        time.sleep(_ATTACH_DELAY)
        started = time.perf_counter()
        result = action()
        active = time.perf_counter() - started
    finally:
        raws = {role: sampler.stop() for role, sampler in samplers.items()}
    for role, raw in raws.items():
        profile = hotspots.summarize(raw)
        result[role] = {
            "samples": profile.samples,
            "waiting_samples": profile.waiting,
            # idle samples are dropped, and the daemons idle outside the action
            "busy": profile.samples / (hotspots.RATE * active),
            "groups": {group: profile.share(group) for group in hotspots.GROUPS + hotspots.DETAILS},
            "top": profile.top(12),
            "raw_file": raw.name,
        }
    return result


def profile_pair(group: servers.ProcessGroup, forward: daemons.Forward, config: Config, out: Path) -> dict:
    """Sample both daemons during one long transfer, then during round trips."""
    payload = traffic.Payload(config.profile_bytes, seed=99)

    def bulk() -> dict:
        return _rate(payload.size, traffic.transfer(forward.address, payload))

    def echo() -> dict:
        return round_trips(forward.address, config, config.profile_round_trips, config.profile_echo_budget)

    return {
        "bulk": _profiled(group, forward, out, "bulk", bulk),
        "round_trips": _profiled(group, forward, out, "rtt", echo),
    }
