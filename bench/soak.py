"""Soak benchmark: a steady stream through two fowld peers while the link is cut again and again.

Builds the namespaces of the fault tests (``harness.netns``: a hub with the
mailbox server and transit relay, alice and bob on a bridge), starts one
``fowld --stdio`` in each, and streams deterministic bytes from alice's
namespace to a sink behind bob's service at ``--rate`` for ``--minutes``,
taking alice's link down for ``--cut-for`` seconds every ``--cut-every``
seconds (``harness.faults.soak``). Reports the bytes and SHA-256 at both ends,
each cut's recovery time (until bytes sent after the cut reached the sink)
and both peers' RSS over time, as Markdown (``--json FILE`` keeps the raw
samples). Needs root and iproute2.

    python bench/soak.py --minutes 8 --cut-every 12 --cut-for 5
    python -m bench soak ...                       (through the bench entry point)

``main(argv)`` is the entry point; it returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run as a script: the harness lives beside bench/
    sys.path.insert(0, str(_ROOT))

from harness.faults import MB, PING, Soak, connect_pair, soak  # noqa: E402
from harness.netns import Topology, remove_stale_namespaces, start_hub, unavailable_reason  # noqa: E402
from harness.servers import ProcessGroup  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="how long the stream runs (8)")
    parser.add_argument("--cut-every", type=float, default=12.0, metavar="S", help="a cut every S s (12)")
    parser.add_argument("--cut-for", type=float, default=5.0, metavar="S", help="each cut lasts S s (5)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="MB/S", help="stream rate (10)")
    parser.add_argument("--ping-interval", type=float, default=PING, metavar="S", help=f"({PING:g})")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every sample to FILE")
    return parser.parse_args(argv)


def markdown(args: argparse.Namespace, result: Soak) -> str:
    recoveries = sorted(result.recoveries) or [0.0]
    median, worst = recoveries[len(recoveries) // 2], recoveries[-1]
    first, last = result.after_first_cut, result.rss_kib[-1][1:]

    def growth(name: str, index: int) -> str:
        change = (last[index] - first[index]) / 1024
        values = f"{first[index]:,} → {last[index]:,} ({change:+.1f} MiB)"
        return f"| RSS {name} after first cut → end (KiB) | {values} |"
    lines = [
        f"soak: {args.minutes:g} min at {args.rate:g} MB/s, link cut {args.cut_for:g} s every "
        f"{args.cut_every:g} s, --ping-interval {args.ping_interval:g}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| bytes (sent = received) | {result.sent:,} |",
        f"| SHA-256 (source = sink) | `{result.sha256[:16]}...` |",
        f"| cuts | {result.cuts} |",
        f"| data again after a cut (median / max) | {median} s / {worst} s |",
        growth("alice", 0),
        growth("bob", 1),
        f"| duration | {result.seconds} s |",
        "",
        "| t (s) | alice RSS (KiB) | bob RSS (KiB) |",
        "|---|---|---|",
    ]
    step = max(1, len(result.rss_kib) // 12)
    shown = result.rss_kib[::step]
    if shown[-1] is not result.rss_kib[-1]:
        shown.append(result.rss_kib[-1])
    lines += [f"| {t} | {alice:,} | {bob:,} |" for t, alice, bob in shown]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reason = unavailable_reason()
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    remove_stale_namespaces()
    topology = Topology.create()
    with tempfile.TemporaryDirectory(prefix="fowld-soak-") as directory:
        processes = ProcessGroup(Path(directory))
        try:
            start_hub(topology, processes)
            pair = connect_pair(processes, topology, args.ping_interval)
            result = soak(
                processes,
                topology,
                pair,
                args.minutes,
                args.cut_every,
                args.cut_for,
                args.rate * MB,
                say=lambda text: print(text, file=sys.stderr, flush=True),
            )
        finally:
            processes.stop_all()
            topology.delete()
    print(markdown(args, result))
    if args.json:
        args.json.write_text(json.dumps(vars(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
