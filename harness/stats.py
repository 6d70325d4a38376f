"""What a process costs, read with psutil: memory, CPU time, file descriptors, threads, wakeups."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import psutil


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` now, in KiB."""
    return psutil.Process(pid).memory_info().rss // 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time ``pid`` used so far (all threads), or None once it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


@dataclass(frozen=True)
class Sample:
    """One reading of a process; ``at`` is ``time.monotonic()``."""

    at: float
    rss_kb: int  # resident memory now, KiB
    peak_rss_kb: int  # the most it was ever resident, KiB
    cpu_s: float  # user + system, all threads
    fds: int
    threads: int
    voluntary_switches: int  # summed over threads: each is one wait that ended (a wakeup)

    def as_dict(self) -> dict:
        return asdict(self)


def _peak_kib(pid: int) -> int:
    # psutil has no peak resident size on Linux; the kernel keeps it as VmHWM
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _voluntary_switches(process: psutil.Process) -> int:
    total = 0
    for thread in process.threads():  # psutil counts the main thread's switches only
        try:
            total += psutil.Process(thread.id).num_ctx_switches().voluntary
        except psutil.Error:
            pass  # a thread that ended while we looked
    return total


def sample(pid: int) -> Sample:
    """Read ``pid`` now; raises psutil.NoSuchProcess (an OSError is not guaranteed) if it is gone."""
    process = psutil.Process(pid)
    with process.oneshot():
        times = process.cpu_times()
        return Sample(
            at=time.monotonic(),
            rss_kb=process.memory_info().rss // 1024,
            peak_rss_kb=_peak_kib(pid),
            cpu_s=times.user + times.system,
            fds=process.num_fds(),
            threads=process.num_threads(),
            voluntary_switches=_voluntary_switches(process),
        )


def idle_usage(before: Sample, after: Sample) -> dict:
    """CPU (percent of one core) and wakeups per second between two samples of one process."""
    seconds = after.at - before.at
    cpu = after.cpu_s - before.cpu_s
    return {
        "window_s": seconds,
        "cpu_s": cpu,
        "cpu_percent": 100 * cpu / seconds,
        "wakeups_per_s": (after.voluntary_switches - before.voluntary_switches) / seconds,
    }
