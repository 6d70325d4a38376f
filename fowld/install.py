"""``fowld install`` and ``fowld uninstall``: this fowld as a systemd user service.

Install writes two files for the user running it, from the templates shipped in
the package: the user unit (``ExecStart=`` set to this very fowld, wherever pipx,
a virtual environment or a distribution put it) and the D-Bus activation file.
Each file starts with a mark; uninstall removes only files that carry it, and
install replaces another file only when forced.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import fowld
from fowld.dbus.names import BUS_NAME

UNIT_NAME = "fowld.service"
ACTIVATION_NAME = BUS_NAME + ".service"  # the bus wants session service files named after the name
MARK = "# Written by `fowld install`; `fowld uninstall` removes it.\n"
SYSTEMCTL_TIMEOUT = 60.0  # seconds; daemon-reload and disable --now answer in well under that
# What `systemctl --user is-system-running` prints when a user manager answers.
MANAGER_STATES = frozenset({"initializing", "starting", "running", "degraded", "maintenance", "stopping"})

Runner = Callable[[list[str]], subprocess.CompletedProcess]


class InstallError(Exception):
    """Nothing was changed; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """Where one user's files go (XDG base directories, as systemd and dbus read them)."""

    unit: Path
    activation: Path

    @classmethod
    def for_user(cls, environ: Mapping[str, str]) -> Target:
        home = Path(environ.get("HOME") or Path.home())
        config = _xdg_dir(environ, "XDG_CONFIG_HOME", home / ".config")
        data = _xdg_dir(environ, "XDG_DATA_HOME", home / ".local" / "share")
        return cls(
            unit=config / "systemd" / "user" / UNIT_NAME,
            activation=data / "dbus-1" / "services" / ACTIVATION_NAME,
        )

    def files(self) -> tuple[Path, Path]:
        return (self.unit, self.activation)


def _xdg_dir(environ: Mapping[str, str], variable: str, default: Path) -> Path:
    value = environ.get(variable, "")
    # The XDG spec: a relative path in these variables is invalid and must be ignored.
    return Path(value) if os.path.isabs(value) else default


def template(name: str) -> str:
    """A file shipped in the package's data directory."""
    return resources.files(fowld).joinpath("data", name).read_text(encoding="utf-8")


def service_command(argv0: str, executable: str, package: Path) -> list[str]:
    """The command line that runs this fowld from a unit, where nobody's PATH applies.

    Run as the ``fowld`` script (pipx, a virtual environment, a distribution
    package): that script. Run as ``python -m fowld``: that interpreter, provided
    it finds this same package without the current directory or PYTHONPATH.
    """
    script = Path(argv0)
    if script.name == "fowld" and script.is_file():
        return [str(script.resolve())]
    interpreter = os.path.abspath(executable)  # not resolved: a venv's python is a symlink out of it
    probe = subprocess.run(
        [interpreter, "-E", "-c", "import fowld; print(fowld.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=SYSTEMCTL_TIMEOUT,
    )
    found = probe.stdout.strip()
    if probe.returncode != 0 or Path(found).resolve().parent != package.resolve():
        raise InstallError(
            f"this fowld ({package}) is found only through PYTHONPATH or the current directory,"
            " which the service would not have: install it first (`pipx install .` in the source"
            " tree) and run the installed `fowld install`"
        )
    return [interpreter, "-m", "fowld"]


def systemd_quote(word: str, *, program: bool = False) -> str:
    """``word`` as one word of a unit's command line: no specifier or variable expansion.

    systemd expands ``$VARIABLE`` in the arguments only, not in the program's path.
    """
    escaped = word.replace("%", "%%")
    if not program:
        escaped = escaped.replace("$", "$$")
    if re.search(r"[\s\"'\\]", escaped):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def render_unit(text: str, command: list[str]) -> str:
    """The shipped unit with its one ``ExecStart=`` line set to ``command``, marked as ours."""
    lines = re.findall(r"(?m)^ExecStart=.*$", text)
    if len(lines) != 1:
        raise InstallError(f"the shipped {UNIT_NAME} has {len(lines)} ExecStart= lines, not one")
    return MARK + re.sub(r"(?m)^ExecStart=.*$", lambda _match: exec_start(command), text)


def exec_start(command: list[str]) -> str:
    program, *arguments = command
    return "ExecStart=" + " ".join([systemd_quote(program, program=True), *map(systemd_quote, arguments)])


def render_activation(text: str) -> str:
    return MARK + text


def written_by_us(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return file.readline() == MARK
    except FileNotFoundError:
        return False


def run_quietly(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)


class UserManager:
    """The user's systemd instance, through ``systemctl --user``."""

    def __init__(self, run: Runner = run_quietly) -> None:
        self._run = run

    def answers(self) -> bool:
        if shutil.which("systemctl") is None:
            return False
        try:
            state = self._run(["systemctl", "--user", "is-system-running"]).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return False
        return state in MANAGER_STATES

    def systemctl(self, *arguments: str) -> str:
        """Run ``systemctl --user ARGUMENTS``; returns what it printed, raises InstallError on failure."""
        argv = ["systemctl", "--user", *arguments]
        try:
            result = self._run(argv)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise InstallError(f"`{' '.join(argv)}` failed: {e}") from None
        if result.returncode != 0:
            raise InstallError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
        return (result.stdout + result.stderr).strip()


def install(
    target: Target, command: list[str], manager: UserManager, *, force: bool, dry_run: bool
) -> list[str]:
    """Write the unit and the activation file; returns what to tell the user, line by line."""
    contents = {
        target.unit: render_unit(template(UNIT_NAME), command),
        target.activation: render_activation(template(ACTIVATION_NAME)),
    }
    foreign = [path for path in contents if path.exists() and not written_by_us(path)]
    if foreign and not force:
        raise InstallError(
            "not replacing " + ", ".join(map(str, foreign)) + ": not written by `fowld install`"
            " (move it away, or run `fowld install --force` to replace it)"
        )
    if dry_run:
        report = []
        for path, text in contents.items():
            report += [f"would write {path}:", *("  " + line for line in text.splitlines())]
        return report + ["would run: systemctl --user daemon-reload"]
    report = []
    for path, text in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".new")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)  # atomic: a reader sees the old file or the new one
        report.append(f"wrote {path}")
        if path == target.unit:
            report.append("  " + exec_start(command))
    if manager.answers():
        manager.systemctl("daemon-reload")
        report.append("ran systemctl --user daemon-reload")
        report += [
            "next: systemctl --user enable --now fowld   (start fowld now and at every login)",
            "  or leave it off: the session bus starts fowld when a client such as fowlctl calls it",
        ]
    else:
        report += [
            "no systemd user manager answers here (systemctl --user), so none was reloaded;",
            "in your login session, run: systemctl --user daemon-reload &&"
            " systemctl --user enable --now fowld",
        ]
    return report


def uninstall(target: Target, manager: UserManager, *, dry_run: bool) -> tuple[list[str], bool]:
    """Stop fowld and remove what install wrote; returns the report and whether all of it went."""
    ours = [path for path in target.files() if written_by_us(path)]
    kept = [path for path in target.files() if path.exists() and path not in ours]
    verb = "would remove" if dry_run else "removed"
    report = [f"left {path}: not written by `fowld install`" for path in kept]
    if not ours:
        return report + ["nothing to remove: `fowld install` wrote nothing here"], not kept
    answers = manager.answers()
    if target.unit in ours and answers:
        if dry_run:
            report.append("would run: systemctl --user disable --now fowld")
        else:
            said = manager.systemctl("disable", "--now", UNIT_NAME)
            report.append("ran systemctl --user disable --now fowld")
            report += ["  " + line for line in said.splitlines()]
    links = enable_links(target.unit) if target.unit in ours else []
    for path in [*links, *ours]:
        if not dry_run:
            path.unlink(missing_ok=True)
        report.append(f"{verb} {path}")
    if answers:
        if not dry_run:
            manager.systemctl("daemon-reload")
        report.append(("would run" if dry_run else "ran") + " systemctl --user daemon-reload")
    elif target.unit in ours:
        report.append(
            "no systemd user manager answers here; where fowld runs, `systemctl --user stop fowld` stops it"
        )
    return report, not kept


def enable_links(unit: Path) -> list[Path]:
    """The links ``systemctl --user enable`` made to ``unit`` (they would dangle once it is gone)."""
    directory = unit.parent
    if not directory.is_dir():
        return []
    return [
        link
        for link in sorted(directory.glob(f"*.*/{unit.name}"))
        if link.is_symlink() and link.parent / os.readlink(link) == unit
    ]


def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run ``fowld install`` or ``fowld uninstall``; returns the exit status."""
    target = Target.for_user(os.environ if environ is None else environ)
    manager = UserManager()
    try:
        if args.command == "install":
            command = service_command(sys.argv[0], sys.executable, Path(fowld.__file__).parent)
            report, complete = install(target, command, manager, force=args.force, dry_run=args.dry_run), True
        else:
            report, complete = uninstall(target, manager, dry_run=args.dry_run)
    except InstallError as e:
        print(f"fowld {args.command}: {e}", file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0 if complete else 1
