"""The Debian package: built by `make deb`, checked by dpkg-deb and lintian, installed on a clean Debian 12.

Slow (a few minutes; the first run also debootstraps a minimal bookworm, kept as a tarball
in .cache/debootstrap/ for later runs): run with FOWL_SLOW=1, as root, with network access
to the Debian mirror and the Python package index.

    FOWL_SLOW=1 .venv/bin/pytest -o timeout=0 tests/test_deb.py

FOWL_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fowld import __version__

REPO = Path(__file__).resolve().parent.parent
SLOW = os.environ.get("FOWL_SLOW") == "1"
MIRROR = os.environ.get("FOWL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = REPO / ".cache" / "debootstrap"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not SLOW, reason="slow (several minutes): run with FOWL_SLOW=1"),
]

# Every path the package promises (docs/packaging.md).
EXPECTED = [
    "usr/bin/fowld",
    "usr/bin/fowlctl",
    "usr/lib/fowld/bin/python3",
    "usr/lib/fowld/pyvenv.cfg",
    "usr/lib/systemd/user/fowld.service",
    "usr/share/dbus-1/services/org.fowl.Fowld1.service",
    "usr/share/man/man1/fowld.1.gz",
    "usr/share/man/man1/fowlctl.1.gz",
    "usr/share/man/man5/fowl-profile.5.gz",
    "usr/share/bash-completion/completions/fowlctl",
    "usr/share/bash-completion/completions/fowld",
    "usr/share/zsh/vendor-completions/_fowlctl",
    "usr/share/zsh/vendor-completions/_fowld",
    "usr/share/fish/vendor_completions.d/fowlctl.fish",
    "usr/share/fish/vendor_completions.d/fowld.fish",
    "usr/share/doc/fowld/copyright",
    "usr/share/doc/fowld/bundled-packages.txt",
    "usr/share/doc/fowld/examples/ssh-share.yaml",
    "usr/share/doc/fowld/examples/ssh-join.yaml",
    "usr/share/doc/fowld/examples/tty-share.yaml",
    "usr/share/doc/fowld/examples/web-preview.yaml",
]


def run(argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and installing the package needs root (apt-get, debootstrap, chroot)")


@pytest.fixture(scope="module")
def deb() -> Path:
    need_root()
    result = run(["make", "deb"], cwd=REPO, timeout=1200)
    assert result.returncode == 0, f"make deb failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    arch = run(["dpkg-architecture", "-q", "DEB_HOST_ARCH"]).stdout.strip()
    version = run(["dpkg-parsechangelog", "-l", "packaging/debian/changelog", "-S", "Version"], cwd=REPO)
    path = REPO / "dist" / f"fowld_{version.stdout.strip()}_{arch}.deb"
    assert path.exists(), f"make deb did not leave {path.name} in dist/:\n{result.stdout[-2000:]}"
    return path


def package_file(deb: Path, name: str) -> str:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(f"./{name}")
        assert member is not None, name
        return member.read().decode()


def test_package_contents(deb):
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines()
    paths = {line.split()[5].removeprefix("./") for line in listing}
    missing = [path for path in EXPECTED if path not in paths and f"{path}/" not in paths]
    assert not missing, missing
    # Bytecode is made by postinst, not shipped (dpkg would not know to remove what Python adds).
    assert not [path for path in paths if "__pycache__" in path or path.endswith(".pyc")]
    unit = package_file(deb, "usr/lib/systemd/user/fowld.service")
    assert re.findall(r"(?m)^ExecStart=.*$", unit) == ["ExecStart=/usr/bin/fowld"]
    assert package_file(deb, "usr/share/dbus-1/services/org.fowl.Fowld1.service") == (
        (REPO / "fowld/data/org.fowl.Fowld1.service").read_text()
    )


def test_package_metadata(deb):
    fields = run(["dpkg-deb", "-f", str(deb)]).stdout
    depends = re.search(r"(?m)^Depends: (.*)$", fields).group(1)
    assert "python3 (>= 3.11)" in depends and "python3 (<< 3.12)" in depends
    assert "dbus-session-bus" in depends
    assert "procps" in depends  # /bin/kill, for the unit's ExecReload=
    # The bundled PyYAML links Debian's libyaml instead of a copy of it.
    assert "libyaml-0-2" in depends
    version = re.search(r"(?m)^Version: (.*)$", fields).group(1)
    assert version.startswith(f"{__version__}-")


def test_user_unit_is_not_enabled_for_everyone(deb, tmp_path):
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    scripts = "".join(
        (control / name).read_text() for name in ("postinst", "prerm", "postrm") if (control / name).exists()
    )
    # --no-enable: debhelper's snippet enables the unit only where it was enabled before (an
    # upgrade keeps an administrator's choice), never on a first installation.
    enables = scripts.count("deb-systemd-helper --user enable")
    guarded = re.findall(
        r"was-enabled 'fowld\.service' ; then\n(?:\s*#.*\n)*\s*deb-systemd-helper --user enable", scripts
    )
    assert enables == len(guarded), scripts
    assert "deb-systemd-helper --user purge 'fowld.service'" in scripts  # the unit was seen


def test_wheel_contains_the_package_data(deb):
    (wheel,) = (REPO / "build" / "deb").glob("fowld-*/debian/.build/wheels/fowld-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = REPO / "fowld" / "data"
    wanted = {str(path.relative_to(REPO)) for path in data.rglob("*") if path.is_file()}
    assert wanted and wanted <= names, wanted - names


def test_lintian_reports_no_errors(deb):
    shutil.which("lintian") or install_host_packages("lintian")
    result = run(["lintian", "--tag-display-limit", "0", str(deb)], timeout=600)
    hints = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    print("\n".join(hints))  # the warnings docs/packaging.md lists, for the log
    errors = [line for line in hints if line.startswith("E: ")]
    assert not errors, "\n".join(errors)
    assert result.returncode == 0, result.stdout + result.stderr


def install_host_packages(*packages: str) -> None:
    result = run(["sh", str(REPO / "packaging" / "apt-install-missing.sh"), *packages], timeout=900)
    assert result.returncode == 0, result.stderr


# --- installing on a clean Debian 12 ----------------------------------------------------------

# A chroot must never start services: invoke-rc.d asks this and is told "not allowed".
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def bookworm_tarball() -> Path:
    """A minimal bookworm, debootstrapped once and kept in .cache/debootstrap."""
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    tarball = CACHE / f"bookworm-minbase-{arch}.tar"
    if tarball.exists():
        return tarball
    shutil.which("debootstrap") or install_host_packages("debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / "rootfs.partial"
    shutil.rmtree(target, ignore_errors=True)
    result = run(["debootstrap", "--variant=minbase", "bookworm", str(target), MIRROR], timeout=1500)
    assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(partial), "."], check=True)
    partial.rename(tarball)  # only a complete tarball is ever reused
    shutil.rmtree(target)
    return tarball


class Chroot:
    """Commands in a throw-away root, in their own mount and PID namespaces.

    The mounts (/proc) vanish with the namespace, and with policy-rc.d and no init nothing
    started inside outlives a command or reaches the host's services.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, script: str, timeout: float = 900, network: bool = True) -> subprocess.CompletedProcess:
        (self.root / "tmp" / "step.sh").write_text(script)
        inner = f"mount -t proc proc {self.root}/proc && exec chroot {self.root} /bin/sh -e /tmp/step.sh"
        argv = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private"]
        if not network:
            # A network namespace of its own: only a loopback interface, brought up here.
            argv.append("--net")
            inner = f"ip link set lo up && {inner}"
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C.UTF-8",
            "HOME": "/root",
            "DEBIAN_FRONTEND": "noninteractive",
        }
        return run([*argv, "sh", "-ec", inner], timeout=timeout, env=env)

    def check(self, script: str, **kwargs) -> str:
        result = self.run(script, **kwargs)
        assert result.returncode == 0, f"{script}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout


@pytest.fixture(scope="module")
def chroot(deb, tmp_path_factory) -> Iterator[Chroot]:
    need_root()
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed (Debian package: util-linux)")
    tarball = bookworm_tarball()
    root = tmp_path_factory.mktemp("bookworm")
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)], check=True)
    (root / "usr/sbin/policy-rc.d").write_text(POLICY_RC_D)
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    shutil.copy(deb, root / "tmp" / deb.name)
    box = Chroot(root)
    box.check("apt-get update -qq")
    # What a user types: apt resolves fowld's dependencies from the Debian mirror.
    installed = box.check(f"apt-get install -y -q ./tmp/{deb.name}")
    print(installed[-2000:])
    yield box
    shutil.rmtree(root, ignore_errors=True)


def test_installed_commands_run(chroot):
    version = chroot.check("fowld --version").strip()
    print(f"installed fowld --version: {version}")
    assert version == f"fowld {__version__}"
    assert "usage: fowlctl" in chroot.check("fowlctl --help")
    checked = chroot.check("cd /usr/share/doc/fowld/examples && fowlctl check *.yaml")
    assert checked.count(": ok (profile ") == 4, checked
    # fowlctl without a bus says so, with its documented exit code.
    result = chroot.run("env -u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR=/nonexistent fowlctl list")
    assert result.returncode == 3, result.stdout + result.stderr
    # postinst compiled the private environment.
    assert chroot.check("find /usr/lib/fowld/lib -name '*.pyc' | head -n 1").strip()
    # Installed, not enabled for every user.
    assert chroot.check("ls /etc/systemd/user/default.target.wants/ 2>/dev/null || true").split() == []


def test_installed_daemon_completes_a_session_offline(chroot):
    """Two fowld --stdio processes meet on an embedded mailbox and connect, in a private network."""
    script = r"""
cd /tmp
options="--transit-relay none --direct-address 127.0.0.1"
mkfifo a.in b.in
fowld --stdio --embedded-mailbox tcp:4000:interface=127.0.0.1 $options < a.in > a.out 2> a.err &
exec 3> a.in
echo '{"kind": "allocate-code"}' >&3
for i in $(seq 100); do grep -q code-allocated a.out && break; sleep 0.2; done
code=$(sed -n 's/.*"code-allocated", "code": "\([^"]*\)".*/\1/p' a.out)
fowld --stdio --mailbox ws://127.0.0.1:4000/v1 $options < b.in > b.out 2> b.err &
exec 4> b.in
echo "{\"kind\": \"set-code\", \"code\": \"$code\"}" >&4
for i in $(seq 150); do grep -q peer-connected a.out && grep -q peer-connected b.out && break; sleep 0.2; done
echo '{"kind": "session-close"}' >&3
echo '{"kind": "session-close"}' >&4
exec 3>&- 4>&-
wait
cat a.out b.out
"""
    output = chroot.check(script, network=False, timeout=120)
    events = [json.loads(line)["kind"] for line in output.splitlines() if line.startswith("{")]
    assert events.count("code-allocated") == 2, output
    assert events.count("peer-connected") == 2, output
    assert events.count("closed") == 2, output


def test_installed_unit_verifies(chroot):
    """systemd in the clean system accepts the packaged unit as it is, /usr/bin/fowld and all."""
    if "systemd-analyze" not in chroot.check("ls /usr/bin"):
        pytest.skip("systemd was not installed with the package's dependencies")
    # The user manager that verify sets up wants a runtime directory, as at login.
    script = (
        "mkdir -m 700 -p /tmp/runtime && HOME=/tmp XDG_RUNTIME_DIR=/tmp/runtime"
        " systemd-analyze --user verify /usr/lib/systemd/user/fowld.service"
    )
    result = chroot.run(script)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_purge_removes_everything(chroot):
    chroot.check("apt-get purge -y -q fowld")
    assert chroot.run("test -e /usr/lib/fowld").returncode != 0
    assert chroot.run("test -e /usr/bin/fowld").returncode != 0
