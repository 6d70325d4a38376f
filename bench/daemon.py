"""Daemon benchmark: what one fowld costs per idle session, and how fast an invite forwards a byte.

Starts, on loopback, a mailbox server, a transit relay, an echo server
(bench/target.py) and two private D-Bus buses with a fowld daemon on each,
then drives them over D-Bus as two users would: Invite on A, Accept on B.

1. Invite → first byte: on freshly started daemons, ``--runs`` times: from
   calling Invite on A to one byte echoed through B's client listener, with
   the steps on the way; each session is closed before the next.
2. Footprint: on another fresh pair, resident memory, CPU time, wakeups and
   file descriptors of both daemons with no session, then with each count of
   ``--sessions`` idle connected sessions, measured over an idle window; then
   a few invite → first byte runs beside the idle sessions, and the same
   readings once every session is closed.

Prints Markdown; ``--json FILE`` keeps every raw number. Results and their
discussion: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import daemon_report
import isolation
from daemon_measure import Config, measure
from daemon_pair import JOIN_PROFILE, SHARE_PROFILE, join_profile, make_side, share_profile
from helpers import cpu_model, servers

_NR_OPEN_FALLBACK = 1 << 20  # the kernel's usual per-process ceiling, when the hard limit is "unlimited"

QUICK = Config(sessions=(1, 3), runs=2, loaded_runs=1, idle_window=2.0, settle=1.0)


def _session_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts like 1,50,200") from None
    if any(n < 1 for n in counts) or list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be positive and increasing")
    return counts


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run: 1 and 3 sessions, 2 s windows")
    parser.add_argument("--sessions", type=_session_counts, metavar="N,N,...", help="idle session counts")
    parser.add_argument("--runs", type=int, metavar="N", help="invite → first byte runs on fresh daemons")
    parser.add_argument("--loaded-runs", type=int, metavar="N", help="the same beside the idle sessions")
    parser.add_argument("--idle", type=float, metavar="S", help="idle window in seconds")
    parser.add_argument("--settle", type=float, metavar="S", help="seconds to settle before each window")
    parser.add_argument("--parallel", type=int, metavar="K", help="sessions opened or closed at once")
    parser.add_argument(
        "--ping-interval", type=float, metavar="S", help="passed to both fowlds (keep-alives)"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write every raw number to FILE")
    parser.add_argument(
        "--nofile", type=int, metavar="N",
        help="open-file limit for every process started (default: this process's hard limit)",
    )  # fmt: skip
    parser.add_argument(
        "--host-network",
        action="store_true",
        help="do not move into a private loopback-only network namespace",
    )
    args = parser.parse_args(argv)
    for name in ("runs", "idle", "parallel", "nofile", "ping_interval"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("loaded_runs", "settle"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    return args


def config_from(args: argparse.Namespace) -> Config:
    base = QUICK if args.quick else Config()
    changes = {
        "sessions": args.sessions,
        "runs": args.runs,
        "loaded_runs": args.loaded_runs,
        "idle_window": args.idle,
        "settle": args.settle,
        "parallel": args.parallel,
        "ping_interval": args.ping_interval,
    }
    return Config(**{**asdict(base), **{k: v for k, v in changes.items() if v is not None}})


def set_open_file_limit(wanted: int | None) -> int:
    """Set the soft open-file limit that every process started from here inherits; returns it.

    A fowld holds a few sockets per session; the usual soft default of 1024
    would cap how many sessions can be measured, and raising it is ours to do.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _NR_OPEN_FALLBACK if hard == resource.RLIM_INFINITY else hard
    limit = ceiling if wanted is None else wanted
    if limit > ceiling:
        raise ValueError(f"--nofile {limit} is above the hard limit {ceiling}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return limit


def machine_facts(open_files: int) -> dict:
    from fowld import __version__

    return {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fowld": f"{__version__}{_source_revision()}",
        "network": "private namespace, loopback only" if isolation.in_private_network() else "host network",
        "open files limit": open_files,
        "load average at start": f"{os.getloadavg()[0]:.2f}",
    }


def _source_revision() -> str:
    """ " (commit abc1234)" of the checkout being measured, "+ changes" if fowld/ differs; "" without git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        changes = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "fowld"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if commit.returncode != 0:
        return ""
    return f" (commit {commit.stdout.strip()}{' + changes' if changes.stdout.strip() else ''})"


def start_target(group: servers.ProcessGroup) -> int:
    """Start bench/target.py (echo and sink); its TCP port on loopback."""
    target = group.spawn([sys.executable, Path(__file__).with_name("target.py")], stdout=subprocess.PIPE)
    try:
        return int(servers.read_line(target.stdout, servers.START_TIMEOUT))
    except (TimeoutError, EOFError, ValueError) as e:
        raise servers.ServerError(f"the target did not start: {e}\n{group.describe(target)}") from None


def run_in_reactor(work: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``work(reactor)`` to the end; KeyboardInterrupt if a signal stopped the reactor first."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

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


def run(config: Config, open_files: int, log_dir: Path) -> dict:
    results: dict = {
        "machine": machine_facts(open_files),
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
        target_port = start_target(group)
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
    results["machine"]["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    results["targets"] = daemon_report.targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    isolation.prepare_run(__file__, argv, args.host_network)
    config = config_from(args)
    try:
        open_files = set_open_file_limit(args.nofile)
    except (ValueError, OSError) as e:
        print(f"daemon benchmark: cannot set the open-file limit: {e}", file=sys.stderr)
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="fowld-bench-daemon-"))
    try:
        results = run(config, open_files, log_dir)
    except (servers.ServerError, TimeoutError) as e:
        print(f"cannot start the benchmark's servers: {e}\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; every process started was stopped; logs in {log_dir}", file=sys.stderr)
        return 130
    command = "python bench/daemon.py" + "".join(f" {arg}" for arg in argv)
    print(daemon_report.render(results, command))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if results["errors"]:
        print(
            "\nfailed:\n" + "\n".join(results["errors"]) + f"\nprocess logs kept in {log_dir}",
            file=sys.stderr,
        )
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
