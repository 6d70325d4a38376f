"""Markdown for the benchmark's results: the side-by-side table, targets and profiles."""

from __future__ import annotations

import statistics
from typing import Any

from hotspots import DETAILS, GROUPS
from measure import MB

# The targets for our daemon.
ROUND_TRIP_TARGET = 0.5e-3  # seconds, median
THROUGHPUT_RATIO_TARGET = 1.5  # our single-stream MB/s over upstream's, same run
SETUP_TARGET = 0.5  # seconds from spawning both daemons to the first byte echoed


def latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.2f} ms"


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def setup_time(setup: dict | None) -> str:
    if not setup:
        return "-"
    if len(setup["runs"]) == 1:
        return duration(setup["median_s"])
    return f"{duration(setup['median_s'])} (best {duration(setup['best_s'])})"


def cpu_time(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def rate(mb_per_s: float | None) -> str:
    return "-" if mb_per_s is None else f"{mb_per_s:,.0f} MB/s"


def lookup(result: dict, *keys: str) -> Any:
    """``result[k1][k2]...``, or None where a key is missing."""
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def results_table(paths: dict[str, dict]) -> str:
    lines = [
        "| path | round trip median | round trip p99 | 1 stream | parallel streams | daemon CPU per GB "
        "| start → forward usable |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in paths.values():
        if result.get("error"):
            lines.append(f"| {result['label']} | failed: {result['error'].splitlines()[0]} | | | | | |")
            continue
        cells = [
            result["label"],
            latency(lookup(result, "round_trip", "median_s")),
            latency(lookup(result, "round_trip", "p99_s")),
            rate(lookup(result, "single", "mb_per_s")),
            rate(lookup(result, "parallel", "mb_per_s")),
            cpu_time(lookup(result, "single", "daemon_cpu_s_per_gb")),
            setup_time(lookup(result, "setup")),
        ]
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
            "measured": latency(round_trip),
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


def cpu_comparison(paths: dict[str, dict]) -> str:
    ours = lookup(paths.get("ours", {}), "single", "daemon_cpu_s_per_gb")
    theirs = lookup(paths.get("upstream", {}), "single", "daemon_cpu_s_per_gb")
    if not ours or not theirs:
        return ""
    return (
        f"Daemon CPU (both processes, user + system) per GB through one stream: ours {ours:.2f} s, "
        f"upstream {theirs:.2f} s: upstream needs {theirs / ours:.2f} × ours. This varies far less "
        "than MB/s with other load on the machine."
    )


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


def profile_table(paths: dict[str, dict], phase: str) -> str:
    """Shares of samples per group, one column per daemon, for one profiled ``phase``."""
    columns = [
        (result["label"], role, result["profile"][phase][role])
        for result in paths.values()
        if lookup(result, "profile", phase)
        for role in ("client", "service")
    ]
    if not columns:
        return ""
    header = "| share of samples | " + " | ".join(f"{label}: {role}" for label, role, _ in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for group in GROUPS + DETAILS:
        name = group if group in GROUPS else f"*{group}*"
        cells = [f"{summary['groups'][group] * 100:.1f} %" for _, _, summary in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| busy (share of one core) | " + " | ".join(f"{s['busy'] * 100:.0f} %" for *_, s in columns) + " |"
    )
    lines.append("| samples | " + " | ".join(str(summary["samples"]) for *_, summary in columns) + " |")
    return "\n".join(lines)


def hot_functions(paths: dict[str, dict], phase: str, count: int = 6) -> list[str]:
    lines = []
    for result in paths.values():
        for role in ("client", "service"):
            summary = lookup(result, "profile", phase, role)
            if summary and summary["samples"]:
                top = "; ".join(f"{name} {share * 100:.1f} %" for name, share in summary["top"][:count])
                lines.append(f"- {result['label']}, {role}: {top}")
    return lines


def _phase_heading(paths: dict[str, dict], phase: str) -> str:
    for result in paths.values():
        measured = lookup(result, "profile", phase)
        if measured and phase == "bulk":
            return f"Profile during a {measured['bytes'] / MB:g} MB transfer (py-spy, idle time excluded):"
        if measured:
            return "Profile during round trips (py-spy, idle time excluded):"
    return ""


def workload(config: dict) -> str:
    return (
        f"Round trips: {config['message_size']} B x {config['round_trips']} "
        f"(at most {config['echo_budget']:g} s); 1 stream: {config['bulk_bytes'] / MB:g} MB, "
        f"median of {config['transfers']}; {config['streams']} streams: "
        f"{config['streams']} x {config['stream_bytes'] / MB:g} MB; setup: median of "
        f"{config['setup_runs']} pairs. MB = 10^6 bytes; every transfer is SHA-256 checked."
    )


def notes(paths: dict[str, dict], config: dict) -> list[str]:
    lines = []
    for result in paths.values():
        label = result["label"]
        count = lookup(result, "round_trip", "count")
        if count is not None and count < config["round_trips"]:
            lines.append(f"- {label}: {count} round trips within the {config['echo_budget']:g} s budget")
        printed = lookup(result, "single", "stdout_lines_per_transfer")
        if printed is not None:
            lines.append(f"- {label}: {printed} stdout lines from both daemons per 1-stream transfer")
        cpu = lookup(result, "round_trip", "daemon_cpu_s_per_round_trip")
        if cpu is not None:
            lines.append(f"- {label}: both daemons used {cpu * 1e6:.0f} µs CPU per round trip")
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
        results_table(paths),
        "",
        *notes(paths, config),
        *setup_steps(paths),
        "",
        targets_table(results["targets"]),
    ]
    cpu = cpu_comparison(paths)
    if cpu:
        out += ["", cpu]
    for phase in ("bulk", "round_trips"):
        table = profile_table(paths, phase)
        if table:
            out += ["", _phase_heading(paths, phase), "", table, "", *hot_functions(paths, phase)]
    return "\n".join(out)
