"""Markdown for the daemon benchmark: footprint per session count, invite → first byte, targets."""

from __future__ import annotations

MB = 1_000_000  # memory in decimal megabytes, as throughput in the forwarding benchmark
KB = 1024  # /proc reports memory in KiB
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


def routes(results: dict) -> str:
    """How the measured sessions reached their peers, e.g. "direct 225"."""
    total: dict[str, int] = {}
    for part in [results["footprint"], *results["latency"].values()]:
        for route, count in part.get("routes", {}).items():
            total[route] = total.get(route, 0) + count
    return ", ".join(f"{route} {count}" for route, count in sorted(total.items())) or "-"


def targets(results: dict) -> list[dict]:
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


def targets_table(found: list[dict]) -> str:
    verdicts = {True: "met", False: "NOT met", None: "not measured"}
    rows = ["| target | measured | |", "|---|---|---|"]
    rows += [f"| {t['target']} | {t['measured']} | {verdicts[t['met']]} |" for t in found]
    return "\n".join(rows)


def render(results: dict, command: str) -> str:
    facts = results["machine"]
    config = results["config"]
    parts = [
        "## Daemon footprint",
        "",
        f"Command: `{command}`",
        "",
        "Machine: " + "; ".join(f"{key} {value}" for key, value in facts.items()),
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
        f"Dilation path of the sessions measured: {routes(results)}.",
        "",
        "### Targets",
        "",
        targets_table(results["targets"]),
    ]
    errors = results.get("errors", [])
    if errors:
        parts += ["", "### Failures", ""] + [f"- {error}" for error in errors]
    return "\n".join(parts)
