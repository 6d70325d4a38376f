"""Forwarding benchmark: raw loopback TCP, ours and upstream fowl, side by side in one run.

Starts a mailbox server (and optionally a transit relay), an echo/sink target
(bench/target.py) and, for each daemon implementation, a pair of stdio
daemons with one forward. Measures 40-byte round trips, single-stream and
parallel transfers (every one checked by SHA-256) and the time from spawning
a pair to the first byte echoed through it; ``--profile`` also samples each
daemon with py-spy. Prints Markdown; ``--json FILE`` keeps every raw number.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import daemons
import isolation
import report
from helpers import cpu_model, servers
from measure import FAILURES, MB, Config, Route, measure_traffic, profile_pair, time_setups

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
_POSITIVE = (
    "round_trips",
    "echo_budget",
    "bulk_mb",
    "transfers",
    "streams",
    "stream_mb",
    "setup_runs",
    "profile_mb",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (seconds, not minutes)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write every raw number to FILE")
    parser.add_argument("--round-trips", type=int, metavar="N", help="sequential 40-byte round trips")
    parser.add_argument("--echo-budget", type=float, metavar="S", help="stop round trips after S seconds")
    parser.add_argument("--bulk-mb", type=int, metavar="MB", help="size of the single-stream transfer")
    parser.add_argument("--transfers", type=int, metavar="T", help="single-stream transfers (median counts)")
    parser.add_argument("--streams", type=int, metavar="K", help="parallel streams")
    parser.add_argument("--stream-mb", type=float, metavar="MB", help="size of each parallel stream")
    parser.add_argument("--setup-runs", type=int, metavar="R", help="daemon pairs started to time setup")
    parser.add_argument(
        "--paths", default="raw,ours,upstream", help="which of raw,ours,upstream to measure (default: all)"
    )
    parser.add_argument(
        "--pairs", default="", metavar="S/C,...", help="also measure mixed pairs, service side / client "
        "side, of ours, upstream and base (e.g. ours/upstream,upstream/ours)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", metavar="DIR", type=Path, help="also measure ours from the fowld package in DIR "
        "(e.g. an export of an earlier commit) as 'base', alone and in --pairs",
    )  # fmt: skip
    parser.add_argument("--relay", action="store_true", help="also run a loopback transit relay and offer it")
    parser.add_argument(
        "--profile", metavar="DIR", type=Path, help="after measuring, sample both daemons of each pair "
        "with py-spy during one long transfer and during round trips; raw stacks go to DIR",
    )  # fmt: skip
    parser.add_argument("--profile-mb", type=int, metavar="MB", help="size of the profiled transfer")
    parser.add_argument(
        "--host-network",
        action="store_true",
        help="do not move into a private loopback-only network namespace",
    )
    args = parser.parse_args(argv)
    unknown = set(args.paths.split(",")) - {"raw", "ours", "upstream"}
    if unknown:
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))} (choose from raw, ours, upstream)")
    for pair in filter(None, args.pairs.split(",")):
        sides = pair.split("/")
        if len(sides) != 2 or not set(sides) <= {"ours", "upstream", "base"}:
            parser.error(f"--pairs: {pair!r} is not SERVICE/CLIENT of ours, upstream, base")
        if "base" in sides and args.baseline is None:
            parser.error(f"--pairs: {pair!r} needs --baseline")
    if args.baseline is not None and not (args.baseline / "fowld" / "__init__.py").is_file():
        parser.error(f"--baseline: no fowld package in {args.baseline}")
    for name in _POSITIVE:
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
        "transfers": args.transfers,
        "streams": args.streams,
        "stream_bytes": None if args.stream_mb is None else int(args.stream_mb * MB),
        "setup_runs": args.setup_runs,
        "profile_bytes": None if args.profile_mb is None else args.profile_mb * MB,
    }
    return Config(**{**asdict(base), **{k: v for k, v in changes.items() if v is not None}})


# the run -------------------------------------------------------------------------


def machine_facts(upstream_python: Path | None, private_network: bool, relay: bool) -> dict:
    facts = {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "network": "private namespace, loopback only" if private_network else "host network",
        "transit_relay": "loopback relay offered" if relay else "none",
        "load average at start": f"{os.getloadavg()[0]:.2f}",
    }
    if upstream_python is not None:
        facts["upstream"] = f"fowl {_upstream_version(upstream_python)}"
    return facts


def _upstream_version(python: Path) -> str:
    try:
        found = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('fowl'))"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return found.stdout.strip() or "?"


def start_target(group: servers.ProcessGroup) -> int:
    """Start bench/target.py; its TCP port on loopback."""
    target = group.spawn([sys.executable, Path(__file__).with_name("target.py")], stdout=subprocess.PIPE)
    try:
        return int(servers.read_line(target.stdout, servers.START_TIMEOUT))
    except (TimeoutError, EOFError, ValueError) as e:
        raise servers.ServerError(f"the target did not start: {e}\n{group.describe(target)}") from None


def open_routes(
    implementations: list[daemons.Implementation],
    open_forward: Callable[[daemons.Implementation], daemons.Forward],
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


def choose(args: argparse.Namespace) -> tuple[list[daemons.Implementation], Path | None]:
    """The daemon pairs to measure, and upstream's interpreter if any pair uses it."""
    wanted = args.paths.split(",")
    pairs = [pair.split("/") for pair in filter(None, args.pairs.split(","))]
    single: dict[str, daemons.Implementation] = {"ours": daemons.ours()}
    if args.baseline is not None:
        single["base"] = daemons.ours(args.baseline.resolve())
        wanted.append("base")
    upstream_python = None
    if "upstream" in wanted or any("upstream" in pair for pair in pairs):
        upstream_python = servers.upstream_python_path()
        if os.access(upstream_python, os.X_OK):
            single["upstream"] = daemons.upstream(upstream_python)
        else:
            print(f"upstream interpreter {upstream_python} not found (set FOWL_UPSTREAM_PYTHON); skipping it")
            upstream_python = None
    chosen = [single[key] for key in ("ours", "upstream", "base") if key in wanted and key in single]
    chosen += [daemons.mixed(single[s], single[c]) for s, c in pairs if s in single and c in single]
    return chosen, upstream_python


def run(args: argparse.Namespace, config: Config, log_dir: Path) -> dict:
    wanted = args.paths.split(",")
    implementations, upstream_python = choose(args)
    facts = machine_facts(upstream_python, isolation.in_private_network(), args.relay)
    results: dict[str, dict] = {}
    routes: list[Route] = []
    group = servers.ProcessGroup(log_dir)
    try:
        mailbox = servers.start_mailbox(group)
        relay = servers.start_transit_relay(group).hint if args.relay else None
        target_port = start_target(group)

        def open_forward(implementation: daemons.Implementation) -> daemons.Forward:
            return daemons.open_forward(group, implementation, mailbox.url, relay, target_port)

        if "raw" in wanted:
            routes.append(Route("raw", "raw loopback TCP", (servers.LOOPBACK, target_port)))
        routes += open_routes(implementations, open_forward, results)
        results.update(measure_traffic(routes, config))
        forwards = [route.forward for route in routes if route.forward is not None]
        for forward in forwards:
            result = results[forward.implementation.key]
            result["path"] = forward.path
            if args.profile is not None and "error" not in result:
                try:
                    result["profile"] = profile_pair(group, forward, config, args.profile)
                except FAILURES as e:
                    result["profile_error"] = f"{type(e).__name__}: {e}"
            forward.stop()
        first = {forward.implementation.key: forward.timings for forward in forwards}
        opened = [i for i in implementations if i.key in first]
        for key, setup in time_setups(open_forward, opened, first, config.setup_runs).items():
            results[key]["setup"] = setup
    finally:
        for route in routes:
            if route.forward is not None:
                route.forward.stop()  # again after a failure; stopping twice is harmless
        group.stop_all()
    facts["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    order = ["raw"] + [implementation.key for implementation in implementations]
    paths = {key: results[key] for key in order if key in results}
    return {"machine": facts, "config": asdict(config), "paths": paths, "targets": report.targets(paths)}


def problems(results: dict) -> list[str]:
    """What went wrong in a run: failed paths, setups or profiles."""
    found = []
    for result in results["paths"].values():
        for what in (
            result.get("error"),
            report.lookup(result, "setup", "error"),
            result.get("profile_error"),
        ):
            if what:
                found.append(f"{result['label']}: {what}")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    isolation.prepare_run(__file__, argv, args.host_network)
    config = config_from(args)
    log_dir = Path(tempfile.mkdtemp(prefix="fowld-bench-"))
    try:
        results = run(args, config, log_dir)
    except (servers.ServerError, TimeoutError) as e:
        print(f"cannot start the benchmark's servers: {e}\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 2
    command = "python bench/forwarding.py" + "".join(f" {arg}" for arg in argv)
    print(report.render(results, command))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    failed = problems(results)
    if failed:
        print("\nfailed:\n" + "\n".join(failed) + f"\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
