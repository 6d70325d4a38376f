"""What a process costs, read from Linux /proc: memory, CPU time, file descriptors, wakeups."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # utime and stime are counted in these


@dataclass(frozen=True)
class Sample:
    """One reading of a process; ``at`` is ``time.monotonic()``."""

    at: float
    rss_kb: int  # VmRSS: resident memory now
    peak_rss_kb: int  # VmHWM: the most it was ever resident
    cpu_ticks: int  # utime + stime, all threads
    fds: int
    threads: int
    voluntary_switches: int  # summed over threads: each is one wait that ended (a wakeup)

    def as_dict(self) -> dict:
        return asdict(self)


def _status_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kb(value: str) -> int:
    return int(value.split()[0])  # "12345 kB"


def _voluntary_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int(_status_fields(task / "status")["voluntary_ctxt_switches"])
        except (OSError, KeyError, ValueError):
            pass  # a thread that ended while we looked
    return total


def sample(pid: int) -> Sample:
    """Read ``pid`` now; raises OSError if it is gone."""
    status = _status_fields(Path(f"/proc/{pid}/status"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return Sample(
        at=time.monotonic(),
        rss_kb=_kb(status["VmRSS"]),
        peak_rss_kb=_kb(status["VmHWM"]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        voluntary_switches=_voluntary_switches(pid),
    )


def idle_usage(before: Sample, after: Sample) -> dict:
    """CPU (percent of one core) and wakeups per second between two samples of one process."""
    seconds = after.at - before.at
    return {
        "window_s": seconds,
        "cpu_s": (after.cpu_ticks - before.cpu_ticks) / CLOCK_TICKS,
        "cpu_percent": 100 * (after.cpu_ticks - before.cpu_ticks) / CLOCK_TICKS / seconds,
        "wakeups_per_s": (after.voluntary_switches - before.voluntary_switches) / seconds,
    }
