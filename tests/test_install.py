"""`fowld install` and `fowld uninstall` in a temporary home: real files, checked by systemd.

Each test runs the installed `fowld` script, with this tree's code (PYTHONPATH
is inherited), against a fresh HOME and XDG directories. No user manager
answers in such a home, so nothing reaches the real user's systemd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fowld import install
from harness.servers import venv_script

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "fowld"


@pytest.fixture
def fowld_script() -> Path:
    script = venv_script("fowld")
    if not script.exists():
        pytest.fail("the fowld console script is not installed: run `pip install -e .` first")
    return script


@pytest.fixture
def home(tmp_path) -> dict[str, str]:
    """An environment whose HOME, XDG directories and runtime directory are fresh."""
    root = tmp_path / "home"
    root.mkdir()
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    environ = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "DBUS_SESSION_BUS_ADDRESS"):
        environ.pop(name, None)
    environ.update(HOME=str(root), XDG_RUNTIME_DIR=str(runtime), LC_ALL="C")
    return environ


def unit_path(environ: dict[str, str]) -> Path:
    return Path(environ["HOME"], ".config", "systemd", "user", "fowld.service")


def activation_path(environ: dict[str, str]) -> Path:
    return Path(environ["HOME"], ".local", "share", "dbus-1", "services", "org.fowl.Fowld1.service")


def run(argv: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60)


def verify(unit: Path, environ: dict[str, str]) -> subprocess.CompletedProcess:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    checked = dict(environ)
    # systemd-analyze reads drop-ins from the XDG directories: keep the real user's out.
    checked.setdefault("XDG_CONFIG_HOME", str(Path(environ["HOME"], ".config")))
    checked.setdefault("XDG_DATA_HOME", str(Path(environ["HOME"], ".local", "share")))
    return run([analyze, "--user", "verify", str(unit)], checked)


def exec_start(unit: Path) -> str:
    (line,) = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


def test_install_writes_a_unit_systemd_accepts(fowld_script, home):
    result = run([str(fowld_script), "install"], home)
    assert result.returncode == 0, result.stderr
    unit, activation = unit_path(home), activation_path(home)
    assert exec_start(unit) == str(fowld_script.resolve())
    # The shipped unit, with only the mark added and ExecStart= set.
    shipped = install.template("fowld.service").splitlines()
    written = unit.read_text().splitlines()
    assert written[0] == install.MARK.strip()
    assert [line for line in written[1:] if not line.startswith("ExecStart=")] == [
        line for line in shipped if not line.startswith("ExecStart=")
    ]
    assert activation.read_text() == install.MARK + install.template("org.fowl.Fowld1.service")
    # It says what it wrote and what to run next.
    assert f"wrote {unit}" in result.stdout
    assert f"wrote {activation}" in result.stdout
    assert "systemctl --user enable --now fowld" in result.stdout

    checked = verify(unit, home)
    # verify exits 0 on unknown keys and bad values and only warns: stderr must be empty.
    assert checked.stderr == ""
    assert checked.returncode == 0


def test_install_follows_the_xdg_directories(fowld_script, home, tmp_path):
    home.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    assert run([str(fowld_script), "install"], home).returncode == 0
    assert (tmp_path / "config" / "systemd" / "user" / "fowld.service").is_file()
    assert (tmp_path / "data" / "dbus-1" / "services" / "org.fowl.Fowld1.service").is_file()
    assert not unit_path(home).exists()

    # A relative value is invalid by the XDG spec and ignored.
    home.update(XDG_CONFIG_HOME="relative/config", XDG_DATA_HOME="relative/data")
    assert run([str(fowld_script), "install"], home).returncode == 0
    assert unit_path(home).is_file()
    assert activation_path(home).is_file()


def test_dry_run_writes_nothing(fowld_script, home):
    result = run([str(fowld_script), "install", "--dry-run"], home)
    assert result.returncode == 0, result.stderr
    assert f"would write {unit_path(home)}:" in result.stdout
    assert f"ExecStart={fowld_script.resolve()}" in result.stdout
    assert not Path(home["HOME"], ".config").exists()
    assert not Path(home["HOME"], ".local").exists()


def test_install_keeps_a_unit_it_did_not_write(fowld_script, home):
    unit = unit_path(home)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/opt/mine/fowld\n")

    refused = run([str(fowld_script), "install"], home)
    assert refused.returncode == 1
    assert str(unit) in refused.stderr and "--force" in refused.stderr
    assert unit.read_text() == "[Service]\nExecStart=/opt/mine/fowld\n"
    assert not activation_path(home).exists()  # all or nothing

    forced = run([str(fowld_script), "install", "--force"], home)
    assert forced.returncode == 0, forced.stderr
    assert exec_start(unit) == str(fowld_script.resolve())
    # Its own files it replaces without being asked (a new version, another fowld).
    again = run([str(fowld_script), "install"], home)
    assert again.returncode == 0, again.stderr


def test_uninstall_removes_only_what_install_wrote(fowld_script, home):
    assert run([str(fowld_script), "install"], home).returncode == 0
    unit, activation = unit_path(home), activation_path(home)
    # What `systemctl --user enable fowld` makes; it would dangle once the unit is gone.
    wants = unit.parent / "default.target.wants"
    wants.mkdir()
    (wants / "fowld.service").symlink_to(unit)
    other = wants / "other.service"
    other.symlink_to(unit.parent / "other.service")
    activation.write_text("[D-BUS Service]\nName=org.fowl.Fowld1\nExec=/opt/mine/fowld\n")

    result = run([str(fowld_script), "uninstall"], home)
    assert result.returncode == 1  # something was left: say so in the status too
    assert f"removed {unit}" in result.stdout
    assert f"left {activation}: not written by `fowld install`" in result.stdout
    assert not unit.exists()
    assert not (wants / "fowld.service").is_symlink()
    assert other.is_symlink()
    assert activation.read_text().startswith("[D-BUS Service]")

    nothing = run([str(fowld_script), "uninstall"], home)
    assert "nothing to remove" in nothing.stdout


def test_uninstall_dry_run_removes_nothing(fowld_script, home):
    assert run([str(fowld_script), "install"], home).returncode == 0
    result = run([str(fowld_script), "uninstall", "--dry-run"], home)
    assert result.returncode == 0, result.stderr
    assert f"would remove {unit_path(home)}" in result.stdout
    assert unit_path(home).exists() and activation_path(home).exists()


def test_exec_start_survives_spaces_and_specifiers(fowld_script, home, tmp_path):
    """systemd expands %x and $X and splits at spaces: a path holding them is quoted."""
    odd = tmp_path / "my tools" / "100%" / "$HOME" / "fowld"
    odd.parent.mkdir(parents=True)
    odd.symlink_to(fowld_script)
    unit = tmp_path / "unit" / "fowld.service"
    unit.parent.mkdir()
    command = [str(odd), "--profiles", "$HOME/100%"]
    unit.write_text(install.render_unit(install.template("fowld.service"), command))
    checked = verify(unit, home)
    assert checked.stderr == ""
    assert checked.returncode == 0
    # The same check fails for the unquoted line, so the quoting is what made it pass.
    unit.write_text(unit.read_text().replace(exec_start(unit), f"{odd} --profiles $HOME/100%"))
    assert verify(unit, home).returncode != 0


def test_python_m_fowld_needs_an_installed_package(tmp_path):
    """`python -m fowld install` writes that interpreter, if it finds this fowld without help."""
    main = str(tmp_path / "__main__.py")
    elsewhere = tmp_path / "checkout" / "fowld"  # a copy nobody installed: only PYTHONPATH finds it
    elsewhere.mkdir(parents=True)
    with pytest.raises(install.InstallError, match="PYTHONPATH"):
        install.service_command(main, sys.executable, elsewhere)
    found = subprocess.run(
        [sys.executable, "-E", "-c", "import fowld; print(fowld.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if found.returncode != 0:
        pytest.skip("no fowld installed for this interpreter")
    installed = Path(found.stdout.strip()).parent
    assert install.service_command(main, sys.executable, installed) == [sys.executable, "-m", "fowld"]


def test_setup_options_go_with_setup_commands(fowld_script, home):
    for argv, message in (
        (["--force"], "--dry-run and --force go with install and uninstall"),
        (["uninstall", "--force"], "--force goes with install"),
        (["install", "--stdio"], "install takes no --stdio"),
    ):
        result = run([str(fowld_script), *argv], home)
        assert result.returncode == 2
        assert message in result.stderr
    assert not Path(home["HOME"], ".config").exists()
