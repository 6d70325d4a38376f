"""Where a daemon's CPU time goes during a transfer, sampled with py-spy.

``Sampler`` attaches ``py-spy record`` to a running daemon by PID (without
pausing it) and stops it with SIGINT, which makes py-spy write its stacks.
``summarize`` sorts every sample into one group:

1. *JSON output / byte reports*: any frame of the per-chunk byte accounting
   or of the JSON-line writer (ours: fowld/stdio/controller.py and the stream table's
   counters; upstream: fowl/status.py and its line printer);
2. otherwise the library of the innermost frame that belongs to one: Noise
   encryption (noise, cryptography), magic-wormhole records (wormhole),
   Twisted I/O (twisted), forwarder code (fowld or fowl). Standard-library
   frames count for the library that called them.

Samples blocked in the reactor's epoll wait are left out, as py-spy leaves
out the idle ones it recognises. ``DETAILS`` are counted besides: time inside
socket calls, and inside automat (the state-machine library magic-wormhole's
Dilation is built on).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import servers

RATE = 200  # samples per second
STOP_TIMEOUT = 20.0  # seconds for py-spy to write its file after SIGINT

REPORTS = "JSON output / byte reports"
GROUPS = (
    REPORTS,
    "Noise encryption",
    "magic-wormhole records",
    "Twisted I/O",
    "forwarder code",
    "other",
)
_LIBRARIES = (
    ("Noise encryption", ("/noise/", "/cryptography/")),
    ("magic-wormhole records", ("/wormhole/",)),
    ("Twisted I/O", ("/twisted/",)),
    ("forwarder code", ("/fowld/", "/fowl/")),
)
_REPORT_FRAMES = (
    ("/fowld/stdio/controller.py", None),
    ("/fowld/engine/streams.py", {"mark_dirty", "flush", "_report"}),
    ("/fowl/status.py", None),
    ("/fowl/_proto.py", {"output_fowl_message"}),
)
# Cross-cutting shares, counted besides the groups (see details())
SOCKET_CALLS = "socket send/recv calls (inside Twisted I/O)"
AUTOMAT = "automat dispatch (inside magic-wormhole records)"
DETAILS = (SOCKET_CALLS, AUTOMAT)
_SOCKET_CALLERS = {"untilConcludes", "Connection.doRead", "Connection.writeSomeData"}
# Innermost frames that mean "blocked, waiting": py-spy --nonblocking does not always see it
_WAITING = {("EPollReactor.doPoll", "/twisted/"), ("Condition.wait", "threading.py")}
_LIBRARY_DIR = re.compile(r"^.*/(site-packages|python3\.\d+)/")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")


class ProfileError(RuntimeError):
    """py-spy is missing or failed."""


def py_spy() -> Path:
    found = servers.venv_script("py-spy")
    if found.exists():
        return found
    on_path = shutil.which("py-spy")
    if on_path is None:
        raise ProfileError("py-spy is not installed (pip install py-spy, or the 'bench' extra)")
    return Path(on_path)


class Sampler:
    """``py-spy record`` attached to one process until ``stop()``."""

    def __init__(self, group: servers.ProcessGroup, pid: int, output: Path, label: str):
        self.output = output
        self._group = group
        argv = [
            py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking",
            "--format", "raw", "--full-filenames", "--nolineno", "--output", output,
        ]  # fmt: skip
        self.process = group.spawn(argv, name=f"py-spy-{label}")

    def stop(self) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._group.stop(self.process)
        if not self.output.exists():
            raise ProfileError(f"py-spy wrote no profile:\n{self._group.describe(self.process)}")
        return self.output


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for text in stack.split(";"):
        match = _FRAME.match(text)
        frames.append((match["function"], match["file"]) if match else (text, ""))
    return frames


def _is_report(function: str, file: str) -> bool:
    name = function.rsplit(".", 1)[-1]  # py-spy qualifies names: StreamTable.mark_dirty
    return any(file.endswith(suffix) and (names is None or name in names) for suffix, names in _REPORT_FRAMES)


def classify(stack: str) -> str:
    """The group of one sampled stack (root first, frames joined by ';')."""
    frames = _frames(stack)
    if any(_is_report(function, file) for function, file in frames):
        return REPORTS
    for _, file in reversed(frames):
        for group, markers in _LIBRARIES:
            if any(marker in file for marker in markers):
                return group
    return "other"


def details(stack: str) -> list[str]:
    """The cross-cutting shares one sampled stack counts for.

    Socket calls: the innermost frame is Twisted's wrapper around a socket's
    send or recv (the kernel's copy shows up there). Automat: the innermost
    library frame is automat's own, the dispatch magic-wormhole's state
    machines do for every record (counted in "magic-wormhole records").
    """
    frames = _frames(stack)
    found = []
    function, file = frames[-1]
    if function in _SOCKET_CALLERS and "/twisted/" in file:
        found.append(SOCKET_CALLS)
    for _, file in reversed(frames):
        if "/automat/" in file:
            found.append(AUTOMAT)
        if "/automat/" in file or any(m in file for _, markers in _LIBRARIES for m in markers):
            break
    return found


def waiting(stack: str) -> bool:
    """True when the innermost frame is the reactor's (or a thread's) wait for work."""
    function, file = _frames(stack)[-1]
    return any(function == name and marker in file for name, marker in _WAITING)


@dataclass
class Profile:
    samples: int = 0  # busy samples: idle and waiting ones are left out
    waiting: int = 0
    groups: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GROUPS + DETAILS, 0))
    functions: collections.Counter = field(default_factory=collections.Counter)  # self time

    def share(self, group: str) -> float:
        """The share of samples in a group of GROUPS, or counted for one of DETAILS."""
        return self.groups[group] / self.samples if self.samples else 0.0

    def top(self, count: int) -> list[tuple[str, float]]:
        return [(name, n / self.samples) for name, n in self.functions.most_common(count)]


def summarize(raw: Path) -> Profile:
    """Group the samples of a py-spy ``raw`` file (one ``stack count`` per line)."""
    profile = Profile()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        if waiting(stack):
            profile.waiting += samples
            continue
        profile.samples += samples
        profile.groups[classify(stack)] += samples
        for detail in details(stack):
            profile.groups[detail] += samples
        function, file = _frames(stack)[-1]
        profile.functions[f"{function} ({_short(file)})"] += samples
    return profile


def _short(file: str) -> str:
    """A path from its package on: .../site-packages/wormhole/x.py -> wormhole/x.py."""
    short = _LIBRARY_DIR.sub("", file)
    if short == file and file.startswith(f"{servers.REPO_ROOT}/"):
        return file[len(f"{servers.REPO_ROOT}/") :]
    return short
