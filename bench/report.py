"""Markdown for both benchmarks' results, and what went wrong in a run.

``render`` picks the forwarding report (the side-by-side table, targets and
profiles) or the daemon report (footprint per session count, invite → first
byte, targets) by the results' ``benchmark``.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.hotspots import DETAILS, GROUPS

MB = 1_000_000  # decimal megabytes, for throughput and memory alike
KB = 1024  # process stats count memory in KiB


def machine(facts: dict) -> str:
    return "Machine: " + "; ".join(f"{key} {value}" for key, value in facts.items())


def targets(results: dict) -> list[dict]:
    if results["benchmark"] == "forwarding":
        return forwarding_targets(results["paths"])
    return daemon_targets(results)


def render(results: dict, command: str) -> str:
    if results["benchmark"] == "forwarding":
        return render_forwarding(results, command)
    return render_daemon(results, command)


def problems(results: dict) -> list[str]:
    """What went wrong in a run: failed phases, paths, setups or profiles, relay rows not relayed."""
    found = list(results.get("errors", []))
    for key, result in results.get("paths", {}).items():
        for what in (result.get("error"), lookup(result, "setup", "error"), result.get("profile_error")):
            if what:
                found.append(f"{result['label']}: {what}")
        if key.endswith("-relay") and "error" not in result and result.get("path") != "relay":
            found.append(f"{result['label']}: not seen crossing the relay (path {result.get('path')})")
    return found


# --- forwarding --------------------------------------------------------------------------------

# The targets for our daemon.
ROUND_TRIP_TARGET = 0.5e-3  # seconds, median
THROUGHPUT_RATIO_TARGET = 1.5  # our single-stream MB/s over upstream's, same run
SETUP_TARGET = 0.5  # seconds from spawning both daemons to the first byte echoed
# Against OpenSSH local forwarding in the same run.
SSH_ROUND_TRIP_RATIO_TARGET = 2.0  # our median round trip over ssh's, at most
SSH_THROUGHPUT_RATIO_TARGET = 0.5  # our single-stream MB/s over ssh's, at least


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
        "| path | round trip median | round trip p99 | 1 stream | parallel streams | CPU per GB, both ends "
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


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours and theirs else None


def _times(ratio: float | None, ours: str, theirs: str) -> str:
    return "-" if ratio is None else f"{ratio:.2f} × ({ours} against {theirs})"


def forwarding_targets(paths: dict[str, dict]) -> list[dict]:
    ours, theirs, ssh = paths.get("ours", {}), paths.get("upstream", {}), paths.get("ssh", {})
    round_trip = lookup(ours, "round_trip", "median_s")
    setup = lookup(ours, "setup", "median_s")
    our_rate, their_rate = lookup(ours, "single", "mb_per_s"), lookup(theirs, "single", "mb_per_s")
    ratio = _ratio(our_rate, their_rate)
    ssh_round_trip, ssh_rate = lookup(ssh, "round_trip", "median_s"), lookup(ssh, "single", "mb_per_s")
    round_trip_ratio, rate_ratio = _ratio(round_trip, ssh_round_trip), _ratio(our_rate, ssh_rate)
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
        {
            "target": f"our round trip median ≤ {SSH_ROUND_TRIP_RATIO_TARGET:g} × OpenSSH's",
            "measured": _times(round_trip_ratio, latency(round_trip), latency(ssh_round_trip)),
            "met": None if round_trip_ratio is None else round_trip_ratio <= SSH_ROUND_TRIP_RATIO_TARGET,
        },
        {
            "target": f"our single-stream throughput ≥ {SSH_THROUGHPUT_RATIO_TARGET:g} × OpenSSH's",
            "measured": _times(rate_ratio, rate(our_rate), rate(ssh_rate)),
            "met": None if rate_ratio is None else rate_ratio >= SSH_THROUGHPUT_RATIO_TARGET,
        },
    ]


def cpu_comparison(paths: dict[str, dict]) -> str:
    """CPU per GB of every row beside ours (both daemons, or sshd and ssh)."""
    ours = lookup(paths.get("ours", {}), "single", "daemon_cpu_s_per_gb")
    others = [
        (result["label"], lookup(result, "single", "daemon_cpu_s_per_gb"))
        for key, result in paths.items()
        if key != "ours"
    ]
    compared = [f"{label} {cpu:.2f} s ({cpu / ours:.2f} × ours)" for label, cpu in others if cpu]
    if not ours or not compared:
        return ""
    return (
        f"CPU (user + system of both ends: the two daemons, or sshd and ssh) per GB through one "
        f"stream: ours {ours:.2f} s; {'; '.join(compared)}. This varies far less than MB/s with "
        "other load on the machine."
    )


def targets_table(rows: list[dict]) -> str:
    """The issue's targets: what was measured, and whether each was met."""
    verdicts = {True: "met", False: "NOT met", None: "not measured"}
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {row['target']} | {row['measured']} | {verdicts[row['met']]} |" for row in rows]
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
        f"Round trips: {config['message_size']} B x {config['round_trips']} in {config['transfers']} "
        f"block(s) taking turns between paths (at most {config['echo_budget']:g} s); "
        f"1 stream: {config['bulk_bytes'] / MB:g} MB, "
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
            lines.append(f"- {label}: both ends used {cpu * 1e6:.0f} µs CPU per round trip")
        if result.get("path"):
            lines.append(f"- {label}: Dilation path {result['path']}")
    return lines


def render_forwarding(results: dict, command: str) -> str:
    config, paths, facts = results["config"], results["paths"], results["machine"]
    out = [
        f"Command: `{command}`",
        "",
        machine(facts),
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


# --- daemon footprint ---------------------------------------------------------------------------

MB_PER_SESSION_TARGET = 0.5
IDLE_CPU_LIMIT = 1.0  # percent of one core: more than this while idle would mean a busy loop
FIRST_BYTE_TARGET = 0.3  # seconds from Invite to the first byte echoed, median
ROLES = {"A": "A (invites, offers echo)", "B": "B (accepts, listens)"}
STEPS = (
    ("code", "code allocated"),
    ("accepted", "accepted"),
    ("peer_connected", "peer connected"),
    ("listening", "listening"),
    ("first_byte", "first byte"),
)


def megabytes(kb: float | None) -> str:
    return "-" if kb is None else f"{kb * KB / MB:.1f} MB"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"


def per_session_kb(levels: list[dict], level: dict, role: str) -> float | None:
    """Resident memory added per session since the first level with sessions."""
    base = next((lv for lv in levels if lv["sessions"] > 0), None)
    if base is None or level["sessions"] <= base["sessions"]:
        return None
    added = level[role]["sample"]["rss_kb"] - base[role]["sample"]["rss_kb"]
    return added / (level["sessions"] - base["sessions"])


def footprint_table(footprint: dict) -> str:
    levels = footprint.get("levels", [])
    rows = [
        "| sessions | daemon | RSS | per added session | idle CPU (one core) | wakeups/s | fds | threads "
        "| D-Bus signals in window |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labelled = [(str(lv["sessions"]), lv) for lv in levels]
    if "after_close" in footprint:
        labelled.append(("0, after closing all", footprint["after_close"]))
    for label, level in labelled:
        for role, name in ROLES.items():
            data = level[role]
            extra = per_session_kb(levels, level, role) if level in levels else None
            rows.append(
                "| "
                + " | ".join(
                    [
                        label,
                        name,
                        megabytes(data["sample"]["rss_kb"]),
                        "-" if extra is None else f"{extra * KB / MB:.3f} MB",
                        f"{data['idle']['cpu_percent']:.2f} %",
                        f"{data['idle']['wakeups_per_s']:.1f}",
                        str(data["sample"]["fds"]),
                        str(data["sample"]["threads"]),
                        str(data["signals"]),
                    ]
                )
                + " |"
            )
    return "\n".join(rows)


def latency_table(latencies: dict[str, dict]) -> str:
    header = " | ".join(name for _, name in STEPS)
    rows = [
        f"| daemons | runs | {header} | first byte min | first byte max |",
        "|---|---|" + "---|" * len(STEPS) + "---|---|",
    ]
    for result in latencies.values():
        if not result.get("runs"):
            continue
        label = result["label"]
        medians = [seconds(result["median"].get(step)) for step, _ in STEPS]
        firsts = [run["first_byte"] for run in result["runs"]]
        cells = [label, str(len(result["runs"])), *medians, seconds(min(firsts)), seconds(max(firsts))]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def daemon_routes(results: dict) -> str:
    """How the measured sessions reached their peers, e.g. "direct 225"."""
    total: dict[str, int] = {}
    for part in [results["footprint"], *results["latency"].values()]:
        for route, count in part.get("routes", {}).items():
            total[route] = total.get(route, 0) + count
    return ", ".join(f"{route} {count}" for route, count in sorted(total.items())) or "-"


def daemon_targets(results: dict) -> list[dict]:
    """The issue's targets, each with what was measured and whether it was met."""
    levels = results["footprint"].get("levels", [])
    top = levels[-1] if levels and levels[-1]["sessions"] > 1 else None
    found = []
    if top is not None:
        extra = per_session_kb(levels, top, "A")
        found.append(
            {
                "target": f"≤ {MB_PER_SESSION_TARGET} MB per session (fowld A, {top['sessions']} sessions)",
                "measured": "-" if extra is None else f"{extra * KB / MB:.3f} MB",
                "met": None if extra is None else extra * KB / MB <= MB_PER_SESSION_TARGET,
            }
        )
        cpu = max(top[role]["idle"]["cpu_percent"] for role in ROLES)
        found.append(
            {
                "target": f"no busy loop: idle CPU ≤ {IDLE_CPU_LIMIT:g} % of one core "
                f"({top['sessions']} sessions, either daemon)",
                "measured": f"{cpu:.2f} %",
                "met": cpu <= IDLE_CPU_LIMIT,
            }
        )
    fresh = results["latency"].get("fresh", {})
    median = fresh.get("median", {}).get("first_byte")
    found.append(
        {
            "target": f"invite → first byte ≤ {FIRST_BYTE_TARGET} s (median, daemons running)",
            "measured": seconds(median),
            "met": None if median is None else median <= FIRST_BYTE_TARGET,
        }
    )
    return found


def render_daemon(results: dict, command: str) -> str:
    facts = results["machine"]
    config = results["config"]
    parts = [
        "## Daemon footprint",
        "",
        f"Command: `{command}`",
        "",
        machine(facts),
        "",
        f"### Idle sessions (idle window {config['idle_window']:g} s after {config['settle']:g} s settling"
        + (
            ""
            if config.get("ping_interval") is None
            else f"; fowld --ping-interval {config['ping_interval']:g}"
        )
        + ")",
        "",
        footprint_table(results["footprint"]),
        "",
        "### Invite → first forwarded byte (medians, from calling Invite on A)",
        "",
        latency_table(results["latency"]),
        "",
        f"Dilation path of the sessions measured: {daemon_routes(results)}.",
        "",
        "### Targets",
        "",
        targets_table(results["targets"]),
    ]
    errors = results.get("errors", [])
    if errors:
        parts += ["", "### Failures", ""] + [f"- {error}" for error in errors]
    return "\n".join(parts)
