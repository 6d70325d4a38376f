"""The test suite's server and process helpers (tests/servers.py), shared.

The benchmark starts the mailbox and transit relay, and stops every process
by its PID, exactly as the tests do. tests/ is not a package, so the module is
loaded from its file.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_servers() -> ModuleType:
    if "servers" in sys.modules:
        return sys.modules["servers"]
    spec = importlib.util.spec_from_file_location("servers", REPO_ROOT / "tests" / "servers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["servers"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


servers = _load_servers()


def cpu_model() -> str:
    """The processor's model name, for the machine facts of a report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
