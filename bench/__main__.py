"""``python -m bench forwarding|daemon [--quick] [--json FILE] ...``: the benchmarks' one entry point.

Both benchmarks let SIGTERM unwind like Ctrl-C (so every process they
started is stopped by its PID), move into a private loopback-only network
namespace when they can (see ``isolate``), print Markdown (bench/report.py)
and with ``--json FILE`` keep every raw number. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import daemon, forwarding, report
from harness import servers

_MARK = "FOWLD_BENCH_PRIVATE_NETWORK"
_PROBE_TIMEOUT = 10.0
_BRING_UP_LOOPBACK = 'ip link set lo up && exec "$@"'
_NR_OPEN_FALLBACK = 1 << 20  # the kernel's usual per-process ceiling, when the hard limit is "unlimited"


# --- options ------------------------------------------------------------------------------------


def _session_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts like 1,50,200") from None
    if any(n < 1 for n in counts) or list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be positive and increasing")
    return counts


def _paths(text: str) -> tuple[str, ...]:
    unknown = set(text.split(",")) - set(forwarding.PATHS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(sorted(unknown))} (choose from {', '.join(forwarding.PATHS)})"
        )
    return tuple(text.split(","))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in text.split(","):
        sides = tuple(entry.split("/"))
        if len(sides) != 2 or not set(sides) <= set(forwarding.SIDES):
            raise argparse.ArgumentTypeError(
                f"{entry!r} is not SERVICE/CLIENT, each one of {', '.join(forwarding.SIDES)}"
            )
        pairs.append(sides)
    return tuple(pairs)


def _source_tree(text: str) -> Path:
    tree = Path(text).resolve()
    if not (tree / "fowld" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text}: no {tree}/fowld/__init__.py")
    return tree


def _at_least(kind: type, minimum: float, or_equal: bool) -> Callable[[str], float]:
    """An option type: a number above ``minimum`` (or equal to it, with ``or_equal``)."""

    def parse(text: str) -> float:
        value = kind(text)
        if value < minimum or (value == minimum and not or_equal):
            raise argparse.ArgumentTypeError(
                f"{text}: must be {'at least' if or_equal else 'above'} {minimum}"
            )
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n", 1)[0],
        epilog="Also: `python -m bench soak` (link cuts under a steady stream) and"
        " `python -m bench pairing` (paired daemons meeting again), each with its own --help.",
    )
    commands = top.add_subparsers(dest="benchmark", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="a small smoke run (seconds, not minutes)")
    common.add_argument("--json", metavar="FILE", type=Path, help="also write every raw number to FILE")
    common.add_argument(
        "--host-network",
        action="store_true",
        help="do not move into a private loopback-only network namespace",
    )
    integer, number = _at_least(int, 0, False), _at_least(float, 0, False)

    f = commands.add_parser("forwarding", parents=[common], help=forwarding.__doc__.split("\n", 1)[0])
    f.add_argument("--round-trips", type=integer, metavar="N", help="sequential 40-byte round trips")
    f.add_argument("--echo-budget", type=number, metavar="S", help="stop round trips after S seconds")
    f.add_argument("--bulk-mb", type=integer, metavar="MB", help="size of the single-stream transfer")
    f.add_argument(
        "--transfers", type=integer, metavar="T",
        help="rounds of transfers, and blocks of round trips, that take turns between paths (medians count)",
    )  # fmt: skip
    f.add_argument("--streams", type=integer, metavar="K", help="parallel streams")
    f.add_argument("--stream-mb", type=number, metavar="MB", help="size of each parallel stream")
    f.add_argument("--setup-runs", type=integer, metavar="R", help="daemon pairs started to time setup")
    f.add_argument(
        "--paths",
        type=_paths,
        default=forwarding.Selection().paths,
        help=f"which of {','.join(forwarding.PATHS)} to measure (ssh: ssh -L through a private sshd)",
    )
    f.add_argument(
        "--pairs", type=_pairs, default=(), metavar="S/C,...",
        help="also measure mixed pairs, service side / client side, each one of "
        f"{', '.join(forwarding.SIDES)} (e.g. ours/upstream,upstream/ours)",
    )  # fmt: skip
    f.add_argument(
        "--baseline", type=_source_tree, metavar="DIR",
        help="also measure ours from the fowld package in DIR (e.g. an export of an earlier commit) as "
        "'base', alone and in --pairs",
    )  # fmt: skip
    f.add_argument(
        "--relay", action="store_true",
        help="also measure ours, upstream (and base) with both daemons relay-only through a loopback "
        "transit relay",
    )  # fmt: skip
    f.add_argument(
        "--profile", metavar="DIR", type=Path, help="after measuring, sample both daemons of each pair "
        "with py-spy during one long transfer and during round trips; raw stacks go to DIR",
    )  # fmt: skip
    f.add_argument("--profile-mb", type=integer, metavar="MB", help="size of the profiled transfer")

    d = commands.add_parser("daemon", parents=[common], help=daemon.__doc__.split("\n", 1)[0])
    d.add_argument("--sessions", type=_session_counts, metavar="N,N,...", help="idle session counts")
    d.add_argument("--runs", type=integer, metavar="N", help="invite → first byte runs on fresh daemons")
    d.add_argument(
        "--loaded-runs", type=_at_least(int, 0, True), metavar="N", help="the same beside idle sessions"
    )
    d.add_argument("--idle", type=number, metavar="S", help="idle window in seconds")
    d.add_argument(
        "--settle", type=_at_least(float, 0, True), metavar="S", help="seconds to settle before a window"
    )
    d.add_argument("--parallel", type=integer, metavar="K", help="sessions opened or closed at once")
    d.add_argument("--ping-interval", type=number, metavar="S", help="passed to both fowlds (keep-alives)")
    d.add_argument(
        "--nofile", type=integer, metavar="N",
        help="open-file limit for every process started (default: this process's hard limit)",
    )  # fmt: skip
    return top


def config_from(args: argparse.Namespace) -> forwarding.Config | daemon.Config:
    """The benchmark's defaults (or its quick ones), with every option given on the command line."""
    mb = forwarding.MB
    if args.benchmark == "forwarding":
        base = forwarding.QUICK if args.quick else forwarding.Config()
        changes = {
            "round_trips": args.round_trips,
            "echo_budget": args.echo_budget,
            "bulk_bytes": None if args.bulk_mb is None else args.bulk_mb * mb,
            "transfers": args.transfers,
            "streams": args.streams,
            "stream_bytes": None if args.stream_mb is None else int(args.stream_mb * mb),
            "setup_runs": args.setup_runs,
            "profile_bytes": None if args.profile_mb is None else args.profile_mb * mb,
        }
    else:
        base = daemon.QUICK if args.quick else daemon.Config()
        changes = {
            "sessions": args.sessions,
            "runs": args.runs,
            "loaded_runs": args.loaded_runs,
            "idle_window": args.idle,
            "settle": args.settle,
            "parallel": args.parallel,
            "ping_interval": args.ping_interval,
        }
    return type(base)(**{**asdict(base), **{k: v for k, v in changes.items() if v is not None}})


# --- where it runs --------------------------------------------------------------------------------


def in_private_network() -> bool:
    return os.environ.get(_MARK) == "1"


def _private_network_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def isolate(argv: list[str], host_network: bool) -> None:
    """Re-run ``python -m bench ARGV`` in a new network namespace whose only interface is ``lo``.

    Dilation offers every local address as a direct hint; there every connection is
    on 127.0.0.1 and nothing a daemon tries reaches another machine. Needs root and
    util-linux's ``unshare``; without them the benchmark runs in the host's network.
    """
    if host_network or in_private_network() or not _private_network_available():
        return
    command = ["unshare", "--net", "--", "sh", "-c", _BRING_UP_LOOPBACK, "sh", sys.executable, "-m", "bench"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", [*command, *argv], {**os.environ, _MARK: "1"})


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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _source_revision() -> str:
    """ " (commit abc1234)" of the checkout being measured, "+ changes" if fowld/ differs; "" without git."""
    git = ["git", "-C", str(servers.REPO_ROOT)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--", "fowld"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if commit.returncode != 0:
        return ""
    return f" (commit {commit.stdout.strip()}{' + changes' if changes.stdout.strip() else ''})"


def machine_facts() -> dict:
    from fowld import __version__

    return {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fowld": f"{__version__}{_source_revision()}",
        "network": "private namespace, loopback only" if in_private_network() else "host network",
        "load average at start": f"{os.getloadavg()[0]:.2f}",
    }


# --- the run ----------------------------------------------------------------------------------------


def selection_from(args: argparse.Namespace) -> forwarding.Selection:
    return forwarding.Selection(args.paths, args.pairs, args.baseline, args.relay, args.profile)


# Benchmarks with options of their own: `python -m bench soak --help`, `python -m bench pairing --help`.
SEPARATE = {"soak": "bench.soak", "pairing": "bench.pairing"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SEPARATE:
        return importlib.import_module(SEPARATE[argv[0]]).main(argv[1:])
    options = parser()
    args = options.parse_args(argv)
    if args.benchmark == "forwarding" and args.baseline is None and any("base" in p for p in args.pairs):
        options.error("--pairs: 'base' needs --baseline DIR")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    isolate(argv, args.host_network)
    config = config_from(args)
    facts = machine_facts()
    if args.benchmark == "daemon":
        try:
            facts["open files limit"] = set_open_file_limit(args.nofile)
        except (ValueError, OSError) as e:
            print(f"daemon benchmark: cannot set the open-file limit: {e}", file=sys.stderr)
            return 2
    log_dir = Path(tempfile.mkdtemp(prefix=f"fowld-bench-{args.benchmark}-"))
    try:
        if args.benchmark == "forwarding":
            results = forwarding.run(selection_from(args), config, facts, log_dir)
        else:
            results = daemon.run(config, facts, log_dir)
    except (servers.ServerError, TimeoutError) as e:
        print(f"cannot start the benchmark's servers: {e}\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; every process started was stopped; logs in {log_dir}", file=sys.stderr)
        return 130
    results["machine"]["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    results["targets"] = report.targets(results)
    print(report.render(results, "python -m bench" + "".join(f" {arg}" for arg in argv)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    failed = report.problems(results)
    if failed:
        print("\nfailed:\n" + "\n".join(failed) + f"\nprocess logs kept in {log_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
