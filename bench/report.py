"""Markdown for the benchmark's results: the side-by-side table, targets and profiles."""

from __future__ import annotations

import statistics

from hotspots import GROUPS

# The targets for our daemon.
ROUND_TRIP_TARGET = 0.5e-3  # seconds, median
THROUGHPUT_RATIO_TARGET = 1.5  # our single-stream MB/s over upstream's, same run
SETUP_TARGET = 0.5  # seconds from spawning both daemons to the first byte echoed


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def rate(mb_per_s: float | None) -> str:
    return "-" if mb_per_s is None else f"{mb_per_s:,.0f} MB/s"


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil
    return ordered[int(rank) - 1]


def lookup(result: dict, *keys: str) -> float | None:
    """``result[k1][k2]...``, or None where a key is missing."""
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def results_table(paths: dict[str, dict]) -> str:
    lines = [
        "| path | round trip median | round trip p99 | 1 stream | 8 streams | start → forward usable |",
        "|---|---|---|---|---|---|",
    ]
    for result in paths.values():
        if result.get("error"):
            lines.append(f"| {result['label']} | failed: {result['error'].splitlines()[0]} | | | | |")
            continue
        streams = lookup(result, "parallel", "streams")
        cells = [
            result["label"],
            duration(lookup(result, "round_trip", "median_s")),
            duration(lookup(result, "round_trip", "p99_s")),
            rate(lookup(result, "single", "mb_per_s")),
            rate(lookup(result, "parallel", "mb_per_s")),
            duration(lookup(result, "setup", "median_s")),
        ]
        if streams not in (None, 8):
            cells[4] += f" ({streams} streams)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[ok]


def targets(paths: dict[str, dict]) -> list[dict]:
    ours, theirs = paths.get("ours", {}), paths.get("upstream", {})
    round_trip = lookup(ours, "round_trip", "median_s")
    setup = lookup(ours, "setup", "median_s")
    our_rate, their_rate = lookup(ours, "single", "mb_per_s"), lookup(theirs, "single", "mb_per_s")
    ratio = our_rate / their_rate if our_rate and their_rate else None
    return [
        {
            "target": "our round trip median ≤ 0.5 ms",
            "measured": duration(round_trip),
            "met": None if round_trip is None else round_trip <= ROUND_TRIP_TARGET,
        },
        {
            "target": "our single-stream throughput ≥ 1.5 × upstream's",
            "measured": "-" if ratio is None else f"{ratio:.2f} ×",
            "met": None if ratio is None else ratio >= THROUGHPUT_RATIO_TARGET,
        },
        {
            "target": "our start → forward usable ≤ 0.5 s",
            "measured": duration(setup),
            "met": None if setup is None else setup <= SETUP_TARGET,
        },
    ]


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {row['target']} | {row['measured']} | {_verdict(row['met'])} |" for row in rows]
    return "\n".join(lines)


def setup_steps(paths: dict[str, dict]) -> list[str]:
    """One line per daemon pair: median seconds after spawning at which each step was seen."""
    lines = []
    for result in paths.values():
        runs = lookup(result, "setup", "runs")
        if not runs:
            continue
        steps = ", ".join(f"{step} {statistics.median(run[step] for run in runs):.3f} s" for step in runs[0])
        lines.append(f"- {result['label']}: {steps} (medians of {len(runs)} runs)")
    return lines


def profile_table(paths: dict[str, dict]) -> str:
    profiled = [(r["label"], r["profile"]) for r in paths.values() if r.get("profile")]
    if not profiled:
        return ""
    columns = [(label, role, profile[role]) for label, profile in profiled for role in ("client", "service")]
    header = "| share of samples | " + " | ".join(f"{label}: {role}" for label, role, _ in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for group in GROUPS:
        cells = [f"{summary['groups'][group] * 100:.1f} %" for _, _, summary in columns]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    busy = [f"{summary['busy'] * 100:.0f} %" for _, _, summary in columns]
    lines.append("| busy (share of one core) | " + " | ".join(busy) + " |")
    return "\n".join(lines)


def profile_hot_functions(paths: dict[str, dict], count: int = 6) -> list[str]:
    lines = []
    for result in paths.values():
        for role in ("client", "service"):
            summary = lookup(result, "profile", role)
            if summary is None:
                continue
            top = "; ".join(f"{name} {share * 100:.1f} %" for name, share in summary["top"][:count])
            lines.append(f"- {result['label']}, {role}: {top}")
    return lines
