"""OpenSSH local forwarding as a yardstick: a private ``sshd`` on loopback and ``ssh -N -L`` to it.

Everything the tunnel needs lives in a directory of its own: the sshd
configuration, a throw-away host key, a throw-away client key (the only key
sshd accepts) and the client's known-hosts file. sshd lets the client forward
to the benchmark's target only. Both programs keep OpenSSH's defaults for
ciphers and key exchange, so the row shows what a user of ``ssh -L`` gets.

sshd needs root (privilege separation) and Debian's openssh-server; ``ssh``
and ``ssh-keygen`` come with openssh-client (``make bench-deps`` installs both).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import traffic
from harness import servers
from harness.wait import until

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; Debian's ssh.service creates it
READY_TIMEOUT = 20.0  # seconds for sshd to listen, and for the client to log in and forward
_CIPHER = re.compile(r"kex: client->server cipher: (\S+)")

_SSHD_CONFIG = """\
ListenAddress {host}:{port}
HostKey {directory}/host_key
AuthorizedKeysFile {directory}/authorized_keys
AllowUsers {user}
PidFile none
UsePAM no
StrictModes no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding local
PermitOpen {host}:{target_port}
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
"""


class TunnelError(RuntimeError):
    """sshd or the ssh client did not come up; the message carries their output."""


def missing() -> str | None:
    """Why the OpenSSH row cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a private sshd needs root"
    absent = [name for name in ("ssh", "ssh-keygen") if shutil.which(name) is None]
    if not SSHD.is_file():
        absent.append(str(SSHD))
    if absent:
        return f"{', '.join(absent)} not found (make bench-deps installs them)"
    return None


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fowld-bench", "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


@dataclass
class Tunnel:
    """A running ``ssh -N -L``: ``address`` reaches the target through sshd."""

    group: servers.ProcessGroup
    sshd: subprocess.Popen
    client: subprocess.Popen
    address: traffic.Address
    cipher: str | None  # as negotiated, from the client's log

    def pids(self) -> tuple[int, ...]:
        """The client, sshd and sshd's per-connection processes, which carry the forwarded bytes."""
        children = psutil.Process(self.sshd.pid).children(recursive=True)
        return (self.client.pid, self.sshd.pid, *(child.pid for child in children))

    def stop(self) -> None:
        """The client first, so sshd's per-connection processes end and sshd reaps them; then sshd."""
        try:
            children = psutil.Process(self.sshd.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.group.stop(self.client)
        _, lingering = psutil.wait_procs(children, timeout=servers.STOP_TIMEOUT)
        for child in lingering:  # started by our sshd; ended by its PID
            try:
                child.kill()
            except psutil.Error:
                pass
        self.group.stop(self.sshd)


def start_tunnel(group: servers.ProcessGroup, target_port: int, directory: Path) -> Tunnel:
    """sshd on a free loopback port, and a client forwarding a new loopback port to the target."""
    directory.mkdir(parents=True, exist_ok=True)
    _keygen(directory / "host_key")
    _keygen(directory / "client_key")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host, port, user = servers.LOOPBACK, servers.free_port(), getpass.getuser()
    config = directory / "sshd_config"
    config.write_text(
        _SSHD_CONFIG.format(host=host, port=port, directory=directory, user=user, target_port=target_port)
    )
    sshd = group.spawn([SSHD, "-D", "-e", "-f", config], name="sshd")
    try:
        servers.wait_for_port(host, port, READY_TIMEOUT, sshd)
    except TimeoutError as e:
        group.stop(sshd)
        raise TunnelError(f"sshd did not start: {e}\n{group.describe(sshd)}") from None
    listen = (host, servers.free_port())
    client = group.spawn(
        [
            "ssh", "-v", "-N", "-F", "none", "-p", str(port), "-i", directory / "client_key",
            "-L", f"{listen[0]}:{listen[1]}:{host}:{target_port}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ExitOnForwardFailure=yes",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={directory / 'known_hosts'}",
            f"{user}@{host}",
        ],
        name="ssh",
    )  # fmt: skip
    tunnel = Tunnel(group, sshd, client, listen, None)
    try:
        until(lambda: _echoes(listen), "the first byte echoed through ssh -L", READY_TIMEOUT, process=client)
    except TimeoutError as e:
        logs = f"{group.describe(client)}\nsshd:\n{group.describe(sshd)}"
        tunnel.stop()
        raise TunnelError(f"ssh -L did not forward: {e}\n{logs}") from None
    found = _CIPHER.search(group.output(client)[1])
    tunnel.cipher = found.group(1) if found else None
    return tunnel


def _echoes(address: traffic.Address) -> bool:
    try:
        traffic.first_echo(address)
    except (OSError, traffic.TransferError):
        return False
    return True
