"""fowld itself as a process: its command line, the environment of its D-Bus daemon, its profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from harness.servers import LOOPBACK, ProcessGroup


def fowld_argv(*options: str | os.PathLike) -> list[str]:
    """``fowld OPTIONS`` (its D-Bus daemon, or ``--stdio`` among them) run by this interpreter."""
    return [sys.executable, "-m", "fowld", *map(str, options)]


def spawn_fowld(
    group: ProcessGroup,
    *options: str | os.PathLike,
    env: dict[str, str] | None = None,
    wrap: Callable[[Sequence[str]], list[str]] | None = None,
    name: str = "fowld",
    stdin: int | IO | None = subprocess.DEVNULL,
    stdout: int | IO | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.Popen:
    """Start ``fowld OPTIONS`` in ``group``; ``wrap`` rewrites the argv (to run it in a namespace)."""
    argv = fowld_argv(*options)
    return group.spawn(wrap(argv) if wrap else argv, env=env, name=name, stdin=stdin, stdout=stdout, cwd=cwd)


def daemon_env(bus: str, config: Path, **extra: str) -> dict[str, str]:
    """The environment of a fowld D-Bus daemon of its own: its bus, its configuration directory.

    Direct Dilation connections stay on loopback unless ``extra`` says otherwise.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(config),
        "DBUS_SESSION_BUS_ADDRESS": bus,
        "XDG_CONFIG_HOME": str(config),
        "FOWL_DIRECT_ADDRESSES": os.environ.get("FOWL_DIRECT_ADDRESSES", LOOPBACK),
        **extra,
    }


def write_profile(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    """``directory/NAME.yaml`` with ``text``, private to its owner as fowld wants it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path
