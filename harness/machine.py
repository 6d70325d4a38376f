"""A throw-away machine with systemd as PID 1, to run the units under a real systemd.

The machine sees the host's own file system through an overlay whose upper
layer is a tmpfs, so nothing it writes reaches the host. It lives in private
PID, mount, UTS, IPC, network (loopback only) and cgroup namespaces, with
``/proc/sys`` and ``/sys`` read-only and a /dev of its own. It boots a small
target of its own (journald, the system bus, logind), never ``multi-user.target``,
so none of the host's services start in it; units that would reach the host's
kernel settings anyway are masked. Each user gets ``user@UID.service``: a real
``systemctl --user`` and a session bus with systemd activation. The machine
ends when its PID 1 is killed, by PID; its mounts go with its mount namespace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BOOT_TIMEOUT = 60.0  # seconds; the machine boots in about 2 s on an idle machine
COMMAND_TIMEOUT = 60.0
TARGET = "fowld-test.target"
# sysinit.target wants these; in a machine sharing the host's kernel they would load
# modules, apply sysctls, set the clock or mount kernel file systems, or are just slow.
MASKED = (
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-random-seed.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-repart.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-pcrphase.service",
    "systemd-update-utmp.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
)
TARGET_UNIT = """\
[Unit]
Description=fowld test machine: journald, the system bus and logind, nothing else
Requires=systemd-journald.socket dbus.socket systemd-logind.service
After=systemd-journald.socket dbus.socket systemd-logind.service
"""
# Runs in the new namespaces, as their PID 1, until it becomes systemd.
INSIDE = """\
set -eu
base=$1; shift
mount -t tmpfs -o mode=0755 fowld-machine "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
root=$base/root
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for node in null zero full random urandom tty; do
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
printf '%s\n' "$FOWL_MACHINE_SHARE" | while IFS= read -r path; do
    [ -n "$path" ] || continue
    mkdir -p "$root$path"
    mount --bind "$path" "$root$path"
    mount -o remount,bind,ro "$root$path"
done
printf '%s' "$FOWL_MACHINE_TARGET" > "$root/etc/systemd/system/$FOWL_MACHINE_TARGET_NAME"
for unit in $FOWL_MACHINE_MASKED; do ln -sf /dev/null "$root/etc/systemd/system/$unit"; done
for user in "$@"; do
    chroot "$root" useradd --create-home --uid "${user#*:}" --user-group --shell /bin/sh "${user%%:*}"
done
chroot "$root" sh -c "$FOWL_MACHINE_SETUP"
cd "$root"
mkdir -p .machine-old-root
pivot_root . .machine-old-root
umount -l /.machine-old-root
rmdir /.machine-old-root
exec env -i container=fowld-test /lib/systemd/systemd --unit="$FOWL_MACHINE_TARGET_NAME"
"""


class MachineError(RuntimeError):
    """The machine did not boot, or a command in it failed; the message has its output."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int

    @property
    def home(self) -> str:
        return f"/home/{self.name}"

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.uid}"

    def environ(self) -> dict[str, str]:
        """A login's environment: what `systemctl --user` and `fowlctl` look for."""
        return {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": f"{self.home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime_dir}/bus",
        }


def unavailable() -> str | None:
    """Why no machine can boot here, or None."""
    if os.geteuid() != 0:
        return "booting systemd in private namespaces needs root"
    for program in ("unshare", "nsenter", "setpriv", "useradd", "pivot_root"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian packages: util-linux, passwd)"
    if not os.access("/lib/systemd/systemd", os.X_OK):
        return "systemd is not installed (Debian package: systemd)"
    if not Path("/usr/lib/systemd/user/dbus.socket").exists():
        return "the user bus under systemd needs the Debian package dbus-user-session"
    if cgroup2_mount() is None:
        return "no cgroup2 hierarchy is mounted"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay file system"
    return None


def cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(fields[0].split()[4])
    return None


def own_cgroup() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise MachineError("this process is in no cgroup2 group")


class Machine:
    """One booted machine. ``run`` executes commands in it, as root or as a user."""

    def __init__(
        self, users: Sequence[User], log_dir: Path, setup: str = "true", share: Sequence[Path] = ()
    ) -> None:
        """``setup`` runs as root in the machine's root before it boots; ``share`` are host
        directories the machine sees read-only where the host has them (its /tmp is its own)."""
        self.users = tuple(users)
        self._setup = setup
        self._share = "\n".join(str(path) for path in share)
        self._log_dir = log_dir
        self._base = Path(tempfile.mkdtemp(prefix="fowld-machine-"))
        mount = cgroup2_mount()
        assert mount is not None
        # A group of our own becomes the machine's cgroup root, so systemd stays inside it.
        self._cgroup = mount / own_cgroup().lstrip("/") / f"fowld-machine-{os.getpid()}-{id(self)}"
        self._starter: subprocess.Popen | None = None
        self.pid: int | None = None  # the machine's PID 1, as the host sees it

    def boot(self, timeout: float = BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        self._cgroup.mkdir()
        environ = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "FOWL_MACHINE_TARGET": TARGET_UNIT,
            "FOWL_MACHINE_TARGET_NAME": TARGET,
            "FOWL_MACHINE_MASKED": " ".join(MASKED),
            "FOWL_MACHINE_SETUP": self._setup,
            "FOWL_MACHINE_SHARE": self._share,
        }
        namespaces = ["--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup"]
        unshare = ["unshare", *namespaces, "--propagation", "private", "sh", "-c", INSIDE, "inside"]
        users = [f"{user.name}:{user.uid}" for user in self.users]
        enter_group = f'echo $$ > {shlex.quote(str(self._cgroup / "cgroup.procs"))} && exec "$@"'
        argv = ["sh", "-c", enter_group, "enter", *unshare, str(self._base), *users]
        with open(self._log_dir / "boot.log", "wb") as log:
            self._starter = subprocess.Popen(
                argv, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.pid = self._wait(deadline, self._first_child, "start its PID 1")
        self._wait(deadline, self._booted, "boot")
        for user in self.users:
            self.run(["systemctl", "start", f"user@{user.uid}.service"], timeout=deadline - time.monotonic())

    def _first_child(self) -> int | None:
        assert self._starter is not None
        if self._starter.poll() is not None:
            raise MachineError(f"the machine exited at once:\n{self.boot_log()}")
        children = Path(f"/proc/{self._starter.pid}/task/{self._starter.pid}/children")
        try:
            pids = children.read_text().split()
        except FileNotFoundError:
            return None
        if not pids:
            return None
        # Until it execs systemd, PID 1 is still setting up the overlay.
        return int(pids[0]) if Path(f"/proc/{pids[0]}/exe").resolve().name == "systemd" else None

    def _booted(self) -> bool | None:
        state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-pager"], check=False).stdout
            raise MachineError(f"the machine booted degraded:\n{failed}")
        return state == "running" or None

    def _wait(self, deadline: float, probe, what: str):
        while time.monotonic() < deadline:
            found = probe()
            if found is not None:
                return found
            time.sleep(0.1)
        raise MachineError(f"the machine did not {what} in time:\n{self.boot_log()}")

    def boot_log(self) -> str:
        return (self._log_dir / "boot.log").read_text(errors="replace")[-4000:]

    def run(
        self,
        argv: Sequence[str],
        *,
        user: User | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the machine, as root or as ``user`` in a login's environment."""
        assert self.pid is not None, "boot the machine first"
        enter = ["nsenter", "--target", str(self.pid), "--all", "--root", "--wd"]
        if user is None:
            environ = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})}
            become = ["env", "-i", *(f"{k}={v}" for k, v in environ.items())]
        else:
            environ = {**user.environ(), **(env or {})}
            ids = [f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups"]
            become = ["setpriv", *ids, "env", "-i", f"--chdir={user.home}"]
            become += [f"{k}={v}" for k, v in environ.items()]
        result = subprocess.run(
            [*enter, *become, *argv], capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise MachineError(
                f"{shlex.join(argv)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}"
            )
        return result

    def spawn(self, argv: Sequence[str], *, user: User | None = None, name: str) -> None:
        """Start ``argv`` in the machine as a transient unit (it dies with the machine)."""
        unit = ["systemd-run", f"--unit={name}", "--collect", "--quiet"]
        if user is not None:
            unit += [f"--uid={user.uid}", f"--gid={user.uid}", f"--working-directory={user.home}"]
        self.run([*unit, *argv])

    def stop(self) -> None:
        """Kill PID 1 (and so every process in the machine) and remove what the host kept of it."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._starter is not None:
            try:
                self._starter.wait(COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._starter.kill()
                self._starter.wait(COMMAND_TIMEOUT)
        self._remove_cgroups()
        self._base.rmdir()  # the tmpfs on it was mounted in the machine's namespace only

    def _remove_cgroups(self, timeout: float = 10.0) -> None:
        # The kernel empties the groups of dead processes shortly after they exit.
        deadline = time.monotonic() + timeout
        while self._cgroup.exists():
            try:
                # Children first: a group with groups in it cannot go.
                for directory, _groups, _files in os.walk(self._cgroup, topdown=False):
                    os.rmdir(directory)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
