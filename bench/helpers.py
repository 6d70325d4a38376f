"""What both benchmarks share: the harness's process and server helpers, and machine facts."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python bench/NAME.py`
    sys.path.insert(0, str(REPO_ROOT))

from harness import servers  # noqa: E402


def cpu_model() -> str:
    """The processor's model name, for the machine facts of a report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


__all__ = ["REPO_ROOT", "cpu_model", "servers"]
