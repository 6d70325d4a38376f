"""Forwarding benchmark: raw loopback TCP, OpenSSH, ours and upstream fowl, side by side in one run.

Starts a mailbox server (and optionally a transit relay), an echo/sink target
(bench/target.py), an ``ssh -L`` tunnel through a private sshd (bench/openssh.py)
and, for each pairing of daemon implementations (ours, upstream's, ours from a
baseline tree; alike or mixed, direct or through the relay), a pair of stdio
daemons with one forward (bench/pairs.py). Measures 40-byte round
trips, single-stream and parallel transfers (every one checked by SHA-256),
CPU per GB of both ends and the time from spawning a pair to the first byte
echoed through it; ``--profile`` also samples each daemon with py-spy.

Repeated measurements take turns between the paths (raw, ssh, ours, upstream,
raw, ssh, ...) so that a change in machine load during the run affects every
path alike and the side-by-side ratios stay fair. Results are plain dicts of
numbers (seconds, bytes, MB/s) that go straight to JSON; report.py renders them.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench import hotspots, openssh, traffic
from bench.pairs import Forward, Implementation, alike, baseline, open_forward, ours, upstream
from harness import servers
from harness.peers import PeerError, StdioPeer
from harness.stats import cpu_seconds

MB = 1_000_000  # throughput is in decimal megabytes per second
_MIN_CPU = 0.2  # seconds; less is too coarse to report per byte or per round trip
_ATTACH_DELAY = 0.5  # seconds for py-spy to attach before the profiled traffic starts
FAILURES = (
    PeerError, traffic.TransferError, OSError, hotspots.ProfileError, psutil.Error, openssh.TunnelError
)  # fmt: skip


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


QUICK = Config(
    round_trips=20,
    echo_budget=10.0,
    bulk_bytes=4 * MB,
    transfers=1,
    stream_bytes=MB // 2,
    setup_runs=1,
    profile_bytes=20 * MB,
    profile_round_trips=200,
    profile_echo_budget=2.0,
)


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Route:
    """One way to reach the target: directly, through ``ssh -L`` or through a daemon pair's forward."""

    key: str
    label: str
    address: traffic.Address
    forward: Forward | None = None
    tunnel: openssh.Tunnel | None = None

    @property
    def daemons(self) -> tuple[StdioPeer, ...]:
        return self.forward.daemons if self.forward else ()

    def pids(self) -> tuple[int, ...]:
        """The processes that carry the bytes: both daemons, or sshd and ssh; none for raw TCP."""
        if self.tunnel is not None:
            return self.tunnel.pids()
        return tuple(daemon.pid for daemon in self.daemons)


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
    """CPU seconds the processes of ``route`` used so far; None without any, or once one is gone."""
    used = [cpu_seconds(pid) for pid in route.pids()]
    return None if not used or None in used else sum(used)


def _enough_cpu(before: float | None, after: float | None) -> bool:
    """Whether a CPU-time difference is worth reporting: /proc counts in 10 ms ticks."""
    return before is not None and after is not None and after - before >= _MIN_CPU


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` whole parts that differ by at most one."""
    return total // parts + (index < total % parts)


@dataclass
class EchoBlocks:
    """A route's round trips, measured in ``config.transfers`` blocks that take turns with other routes.

    The count and the time budget are shared out among the blocks; CPU adds up
    over the blocks (None once a reading is missing).
    """

    config: Config
    times: list[float] = field(default_factory=list)
    cpu: float | None = 0.0

    def measure(self, route: Route, block: int) -> None:
        blocks = self.config.transfers
        count = share(self.config.round_trips, blocks, block)
        before = _cpu(route)
        self.times += traffic.round_trips(
            route.address, count, self.config.message_size, self.config.echo_budget / blocks
        )
        after = _cpu(route)
        if self.cpu is not None and before is not None and after is not None:
            self.cpu += after - before
        else:
            self.cpu = None

    def result(self) -> dict:
        times = self.times
        result = {"count": len(times), "median_s": statistics.median(times), "p99_s": percentile(times, 0.99)}
        if _enough_cpu(0.0, self.cpu):
            result["daemon_cpu_s_per_round_trip"] = self.cpu / len(times)
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

    # round trips in blocks that take turns, like the transfers: a change in load hits every route
    echoes = {route.key: EchoBlocks(config) for route in routes}
    for block in range(config.transfers):
        each(lambda r, b=block: echoes[r.key].measure(r, b))
    for route in live:
        results[route.key]["round_trip"] = echoes[route.key].result()
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
    open_forward: Callable[[Implementation], Forward],
    implementations: list[Implementation],
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
    group: servers.ProcessGroup, forward: Forward, out: Path, phase: str, action: Callable[[], dict]
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


def profile_pair(group: servers.ProcessGroup, forward: Forward, config: Config, out: Path) -> dict:
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


# --- the run ----------------------------------------------------------------------------------

PATHS = ("raw", "ssh", "ours", "upstream")  # what --paths may name
SIDES = ("ours", "upstream", "base")  # what either side of a --pairs entry may name


@dataclass(frozen=True)
class Selection:
    """What one run measures."""

    paths: tuple[str, ...] = PATHS
    pairs: tuple[tuple[str, str], ...] = ()  # (service side, client side) of SIDES
    baseline: Path | None = None  # a tree with a ``fowld`` package: the ``base`` daemon
    relay: bool = False  # also every alike pairing through a loopback transit relay
    profile: Path | None = None  # py-spy output directory


def choose(selection: Selection, facts: dict) -> list[Implementation]:
    """The pairings to measure, in table order: alike ones, mixed ones, then alike through the relay.

    A pairing that needs upstream when its interpreter is missing is left out
    with a message; ``facts`` gets upstream's version and the baseline tree.
    """
    daemons = {"ours": ours()}
    if selection.baseline is not None:
        daemons["base"] = baseline(selection.baseline)
        facts["baseline"] = str(selection.baseline)
    # base, when given, is measured alone as well as in --pairs
    wanted_alike = [key for key in SIDES if key in selection.paths or (key == "base" and key in daemons)]
    if "upstream" in wanted_alike or any("upstream" in pair for pair in selection.pairs):
        python = servers.upstream_python_path()
        if os.access(python, os.X_OK):
            daemons["upstream"] = upstream(python)
            facts["upstream"] = f"fowl {_upstream_version(python)}"
        else:
            print(f"upstream interpreter {python} not found (set FOWL_UPSTREAM_PYTHON); skipping it")
    alike_ones = [alike(daemons[key]) for key in wanted_alike if key in daemons]
    chosen = list(alike_ones)
    for service, client in selection.pairs:
        if service in daemons and client in daemons:
            chosen.append(Implementation(daemons[service], daemons[client]))
    if selection.relay:
        chosen += [alike(implementation.service, relay=True) for implementation in alike_ones]
    unique = {implementation.key: implementation for implementation in chosen}  # ours/ours is ours
    return list(unique.values())


def open_routes(
    implementations: list[Implementation],
    open_forward: Callable[[Implementation], Forward],
    failures: dict[str, dict],
) -> list[Route]:
    """A route through a new pair per implementation; pairs that fail go into ``failures``."""
    routes = []
    for implementation in implementations:
        try:
            forward = open_forward(implementation)
        except FAILURES as e:
            failures[implementation.key] = {
                "label": implementation.label,
                "error": f"{type(e).__name__}: {e}",
            }
            continue
        routes.append(Route(implementation.key, implementation.label, forward.address, forward))
    return routes


SSH_LABEL = "OpenSSH (ssh -L to sshd)"


def open_ssh_route(
    group: servers.ProcessGroup, target_port: int, directory: Path, facts: dict, failures: dict[str, dict]
) -> Route | None:
    """A route through ``ssh -L``, or None (with a message, or in ``failures`` if it broke)."""
    why = openssh.missing()
    if why is not None:
        print(f"OpenSSH row skipped: {why}")
        return None
    try:
        tunnel = openssh.start_tunnel(group, target_port, directory)
    except (openssh.TunnelError, OSError, subprocess.SubprocessError) as e:
        failures["ssh"] = {"label": SSH_LABEL, "error": f"{type(e).__name__}: {e}"}
        return None
    facts["openssh"] = f"{_openssh_version()}, cipher {tunnel.cipher or '?'}"
    return Route("ssh", SSH_LABEL, tunnel.address, tunnel=tunnel)


def _openssh_version() -> str:
    try:
        found = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return found.stderr.strip().split(",")[0] or "?"


def _upstream_version(python: Path) -> str:
    try:
        found = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('fowl'))"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return found.stdout.strip() or "?"


def run(selection: Selection, config: Config, facts: dict, log_dir: Path) -> dict:
    """Measure what ``selection`` names; ``facts`` are the machine's, completed here."""
    implementations = choose(selection, facts)
    facts["transit_relay"] = "loopback relay, for the relay rows only" if selection.relay else "none"
    results: dict[str, dict] = {}
    routes: list[Route] = []
    group = servers.ProcessGroup(log_dir)
    try:
        mailbox = servers.start_mailbox(group)
        relay = servers.start_transit_relay(group) if selection.relay else None
        target_port = traffic.start_target(group)

        def open_pair(implementation: Implementation) -> Forward:
            return open_forward(group, implementation, mailbox.url, relay, target_port)

        if "raw" in selection.paths:
            routes.append(Route("raw", "raw loopback TCP", (servers.LOOPBACK, target_port)))
        if "ssh" in selection.paths:
            ssh = open_ssh_route(group, target_port, log_dir / "openssh", facts, results)
            routes += [ssh] if ssh else []
        routes += open_routes(implementations, open_pair, results)
        results.update(measure_traffic(routes, config))
        forwards = [route.forward for route in routes if route.forward is not None]
        for forward in forwards:
            result = results[forward.implementation.key]
            result["path"] = forward.path
            if selection.profile is not None and "error" not in result:
                try:
                    result["profile"] = profile_pair(group, forward, config, selection.profile)
                except FAILURES as e:
                    result["profile_error"] = f"{type(e).__name__}: {e}"
            forward.stop()
        first = {forward.implementation.key: forward.timings for forward in forwards}
        opened = [i for i in implementations if i.key in first]
        for key, setup in time_setups(open_pair, opened, first, config.setup_runs).items():
            results[key]["setup"] = setup
    finally:
        for route in routes:
            if route.forward is not None:
                route.forward.stop()  # again after a failure; stopping twice is harmless
            if route.tunnel is not None:
                route.tunnel.stop()
        group.stop_all()
    order = ["raw", "ssh", *(implementation.key for implementation in implementations)]
    paths = {key: results[key] for key in order if key in results}
    return {"benchmark": "forwarding", "machine": facts, "config": asdict(config), "paths": paths}
