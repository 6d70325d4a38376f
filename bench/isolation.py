"""Run the benchmark in a private network namespace that has only loopback.

Dilation offers every local address as a direct hint, so on a normal host two
daemons may meet over the machine's LAN address. Inside a fresh namespace the
only interface is ``lo``: every connection is on 127.0.0.1 and nothing a
daemon tries can reach another machine. This needs root and util-linux's
``unshare``; without them the benchmark runs in the host's network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

_MARK = "FOWLD_BENCH_PRIVATE_NETWORK"
_PROBE_TIMEOUT = 10.0
_BRING_UP_LOOPBACK = 'ip link set lo up && exec "$@"'


def in_private_network() -> bool:
    return os.environ.get(_MARK) == "1"


def private_network_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        probe = subprocess.run(
            ["unshare", "--net", "true"], capture_output=True, timeout=_PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def reexec_in_private_network(argv: list[str]) -> None:
    """Replace this process with ``python argv...`` inside a new namespace (loopback up)."""
    env = {**os.environ, _MARK: "1"}
    command = ["unshare", "--net", "--", "sh", "-c", _BRING_UP_LOOPBACK, "sh", sys.executable, *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", command, env)


def prepare_run(script: str, argv: list[str], host_network: bool) -> None:
    """What every benchmark does first: let SIGTERM unwind like Ctrl-C (so every process
    it started is stopped by its PID), and move into a private network when it can."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not host_network and not in_private_network() and private_network_available():
        reexec_in_private_network([script, *argv])
