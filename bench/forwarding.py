"""Forwarding benchmark: raw loopback TCP, ours and upstream fowl, side by side in one run.

Starts a mailbox server (and optionally a transit relay), an echo/sink target
and, for each daemon implementation, a pair of stdio daemons with one forward.
Measures 40-byte round trips, one bulk stream, parallel streams (every
transfer checked by SHA-256) and the time from spawning a pair to the first
byte echoed through it. Prints Markdown; ``--json FILE`` keeps raw numbers.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import daemons
import hotspots
import isolation
import report
import traffic
from helpers import servers

MB = 1_000_000  # throughput is in decimal megabytes per second


@dataclass(frozen=True)
class Config:
    round_trips: int = 1000
    message_size: int = 40
    echo_budget: float = 120.0  # seconds; a path with 88 ms round trips stops early
    bulk_bytes: int = 200 * MB
    streams: int = 8
    stream_bytes: int = 25 * MB
    setup_runs: int = 5

    def transfer_timeout(self, size: int) -> float:
        return 60.0 + size / (5 * MB)  # generous: slower than 5 MB/s means something is broken


QUICK = Config(round_trips=20, echo_budget=10.0, bulk_bytes=4 * MB, stream_bytes=MB // 2, setup_runs=1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (seconds, not minutes)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write every raw number to FILE")
    parser.add_argument("--round-trips", type=int, metavar="N", help="sequential 40-byte round trips")
    parser.add_argument("--echo-budget", type=float, metavar="S", help="stop round trips after S seconds")
    parser.add_argument("--bulk-mb", type=int, metavar="MB", help="size of the single-stream transfer")
    parser.add_argument("--streams", type=int, metavar="K", help="parallel streams")
    parser.add_argument("--stream-mb", type=float, metavar="MB", help="size of each parallel stream")
    parser.add_argument("--setup-runs", type=int, metavar="R", help="daemon pairs started to time setup")
    parser.add_argument(
        "--paths", default="raw,ours,upstream", help="which of raw,ours,upstream to measure (default: all)"
    )
    parser.add_argument("--relay", action="store_true", help="also run a loopback transit relay and offer it")
    parser.add_argument(
        "--profile", metavar="DIR", type=Path, help="after measuring, sample each daemon with py-spy "
        "during one more single-stream transfer; raw stacks go to DIR",
    )  # fmt: skip
    parser.add_argument(
        "--host-network",
        action="store_true",
        help="do not move into a private loopback-only network namespace",
    )
    args = parser.parse_args(argv)
    unknown = set(args.paths.split(",")) - {"raw", "ours", "upstream"}
    if unknown:
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))} (choose from raw, ours, upstream)")
    for name in ("round_trips", "bulk_mb", "streams", "stream_mb", "setup_runs", "echo_budget"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def config_from(args: argparse.Namespace) -> Config:
    base = QUICK if args.quick else Config()
    changes = {
        "round_trips": args.round_trips,
        "echo_budget": args.echo_budget,
        "bulk_bytes": None if args.bulk_mb is None else args.bulk_mb * MB,
        "streams": args.streams,
        "stream_bytes": None if args.stream_mb is None else int(args.stream_mb * MB),
        "setup_runs": args.setup_runs,
    }
    return Config(**{**asdict(base), **{k: v for k, v in changes.items() if v is not None}})


# measuring -----------------------------------------------------------------------


def measure_traffic(address: traffic.Address, config: Config, watched: tuple = ()) -> dict:
    """Round trips, one bulk stream and parallel streams through ``address``."""
    times = traffic.round_trips(address, config.round_trips, config.message_size, config.echo_budget)
    result = {
        "round_trip": {
            "count": len(times),
            "message_bytes": config.message_size,
            "median_s": statistics.median(times),
            "p99_s": report.percentile(times, 0.99),
        }
    }
    marks = [daemon.mark() for daemon in watched]
    single = traffic.Payload(config.bulk_bytes, seed=1)
    seconds = traffic.transfer(address, single)
    result["single"] = {"bytes": single.size, "seconds": seconds, "mb_per_s": single.size / MB / seconds}
    if watched:  # upstream prints a JSON line per chunk; ours coalesces
        result["single"]["stdout_lines"] = sum(d.mark() - m for d, m in zip(watched, marks, strict=True))
    payloads = [traffic.Payload(config.stream_bytes, seed=100 + i) for i in range(config.streams)]
    total = sum(p.size for p in payloads)
    seconds = traffic.parallel_transfer(address, payloads, config.transfer_timeout(total))
    result["parallel"] = {
        "streams": config.streams,
        "bytes_each": config.stream_bytes,
        "seconds": seconds,
        "mb_per_s": total / MB / seconds,
    }
    result["sha256_checked"] = 1 + config.streams
    return result


def profile_transfer(
    group: servers.ProcessGroup, forward: daemons.Forward, config: Config, out: Path
) -> dict:
    """One more single-stream transfer with py-spy on both daemons; grouped shares of samples."""
    out.mkdir(parents=True, exist_ok=True)
    key = forward.implementation.key
    samplers = {
        role: hotspots.Sampler(group, daemon.pid, out / f"{key}-{role}.txt", f"{key}-{role}")
        for role, daemon in (("service", forward.service), ("client", forward.client))
    }
    started = time.perf_counter()
    time.sleep(0.5)  # py-spy attaches asynchronously
    payload = traffic.Payload(config.bulk_bytes, seed=2)
    try:
        seconds = traffic.transfer(forward.address, payload)
    finally:
        window = time.perf_counter() - started
        raws = {role: sampler.stop() for role, sampler in samplers.items()}
    result: dict = {
        "transfer": {"bytes": payload.size, "seconds": seconds, "mb_per_s": payload.size / MB / seconds}
    }
    for role, raw in raws.items():
        profile = hotspots.summarize(raw)
        result[role] = {
            "samples": profile.samples,
            "busy": profile.samples / (hotspots.RATE * window),
            "groups": {group: profile.share(group) for group in hotspots.GROUPS},
            "top": profile.top(12),
            "raw_file": raw.name,
        }
    return result


def measure_implementation(
    group: servers.ProcessGroup,
    implementation: daemons.Implementation,
    mailbox_url: str,
    relay: str | None,
    target_port: int,
    config: Config,
    profile_dir: Path | None,
) -> dict:
    result: dict = {"label": implementation.label}
    opened = lambda: daemons.open_forward(group, implementation, mailbox_url, relay, target_port)  # noqa: E731
    forward = opened()
    runs = [forward.timings]
    try:
        result["path"] = forward.path
        result.update(measure_traffic(forward.address, config, forward.daemons))
        if profile_dir is not None:
            result["profile"] = profile_transfer(group, forward, config, profile_dir)
    finally:
        forward.stop()
    for _ in range(config.setup_runs - 1):
        forward = opened()
        forward.stop()
        runs.append(forward.timings)
    result["setup"] = {"runs": runs, "median_s": statistics.median(run["usable"] for run in runs)}
    return result


# the run -------------------------------------------------------------------------


def machine_facts(upstream_python: Path | None, private_network: bool, relay: bool) -> dict:
    facts = {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "network": "private namespace, loopback only" if private_network else "host network",
        "transit_relay": "loopback relay offered" if relay else "none",
    }
    if upstream_python is not None:
        version = subprocess.run(
            [upstream_python, "-c", "import importlib.metadata as m; print(m.version('fowl'))"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        facts["upstream"] = f"fowl {version.stdout.strip() or '?'}"
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(args: argparse.Namespace, config: Config, log_dir: Path) -> dict:
    wanted = args.paths.split(",")
    upstream_python = servers.upstream_python_path() if "upstream" in wanted else None
    if upstream_python is not None and not os.access(upstream_python, os.X_OK):
        print(f"upstream interpreter {upstream_python} not found (set FOWL_UPSTREAM_PYTHON); skipping it")
        upstream_python = None
    facts = machine_facts(upstream_python, isolation.in_private_network(), args.relay)
    paths: dict[str, dict] = {}
    group = servers.ProcessGroup(log_dir)
    try:
        mailbox = servers.start_mailbox(group)
        relay = servers.start_transit_relay(group).hint if args.relay else None
        target = group.spawn([sys.executable, Path(__file__).with_name("target.py")], stdout=subprocess.PIPE)
        target_port = int(servers.read_line(target.stdout, servers.START_TIMEOUT))
        if "raw" in wanted:
            paths["raw"] = {"label": "raw loopback TCP"}
            try:
                paths["raw"].update(measure_traffic((servers.LOOPBACK, target_port), config))
            except (traffic.TransferError, OSError) as e:
                paths["raw"]["error"] = f"{type(e).__name__}: {e}"
        implementations = []
        if "ours" in wanted:
            implementations.append(daemons.ours())
        if upstream_python is not None:
            implementations.append(daemons.upstream(upstream_python))
        for implementation in implementations:
            try:
                paths[implementation.key] = measure_implementation(
                    group, implementation, mailbox.url, relay, target_port, config, args.profile
                )
            except (daemons.DaemonError, traffic.TransferError, OSError, hotspots.ProfileError) as e:
                paths[implementation.key] = {
                    "label": implementation.label,
                    "error": f"{type(e).__name__}: {e}",
                }
    finally:
        group.stop_all()
    return {"machine": facts, "config": asdict(config), "paths": paths, "targets": report.targets(paths)}


def workload(config: dict) -> str:
    return (
        f"Round trips: {config['message_size']} B x {config['round_trips']} "
        f"(at most {config['echo_budget']:g} s); 1 stream: {config['bulk_bytes'] / MB:g} MB; "
        f"{config['streams']} streams: {config['streams']} x {config['stream_bytes'] / MB:g} MB; "
        f"setup: median of {config['setup_runs']} pairs. MB = 10^6 bytes; every transfer is SHA-256 checked."
    )


def notes(paths: dict[str, dict], config: dict) -> list[str]:
    lines = []
    for result in paths.values():
        label = result["label"]
        count = report.lookup(result, "round_trip", "count")
        if count is not None and count < config["round_trips"]:
            lines.append(f"- {label}: {count} round trips within the {config['echo_budget']:g} s budget")
        printed = report.lookup(result, "single", "stdout_lines")
        if printed is not None:
            lines.append(f"- {label}: {printed} stdout lines from both daemons during the 1-stream transfer")
        if result.get("path"):
            lines.append(f"- {label}: Dilation path {result['path']}")
    return lines


def render(results: dict, command: str) -> str:
    config, paths, facts = results["config"], results["paths"], results["machine"]
    out = [
        f"Command: `{command}`",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in facts.items()),
        "",
        workload(config),
        "",
        report.results_table(paths),
        "",
        *notes(paths, config),
        *report.setup_steps(paths),
        "",
        report.targets_table(results["targets"]),
    ]
    profile = report.profile_table(paths)
    if profile:
        out += ["", "Profile (py-spy, one more 1-stream transfer, idle time excluded):", "", profile, ""]
        out += report.profile_hot_functions(paths)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.host_network and not isolation.in_private_network() and isolation.private_network_available():
        isolation.reexec_in_private_network([__file__, *argv])
    config = config_from(args)
    log_dir = Path(tempfile.mkdtemp(prefix="fowld-bench-"))
    try:
        results = run(args, config, log_dir)
    except (servers.ServerError, TimeoutError, EOFError, ValueError) as e:
        print(f"cannot start the benchmark's servers: {e}\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 2
    command = "python bench/forwarding.py" + "".join(f" {arg}" for arg in argv)
    print(render(results, command))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    failed = [r["label"] for r in results["paths"].values() if r.get("error")]
    if failed:
        print(f"\nfailed: {', '.join(failed)}; process logs kept in {log_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
