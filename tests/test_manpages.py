"""The man pages under fowld/data/man: current with the parsers, and rendered by man without warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fowld import __version__

REPO = Path(__file__).resolve().parent.parent
MAN = REPO / "fowld" / "data" / "man"
GENERATE = REPO / "packaging" / "generate.py"
PAGES = ["fowld.1", "fowlctl.1", "fowl-profile.5"]


def regenerate(what: str, out: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATE), what, "--out", str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_generated_pages_are_current(tmp_path):
    regenerate("man", tmp_path)
    for name in ("fowld.1", "fowlctl.1"):
        fresh = (tmp_path / name).read_text()
        assert (MAN / name).read_text() == fresh, f"fowld/data/man/{name} is stale: run `make man`"


@pytest.fixture
def man() -> str:
    path = shutil.which("man")
    if path is None:
        pytest.fail(
            "man is not installed (Debian package: man-db; packaging/ensure-system-deps.sh installs it)"
        )
    return path


def render(man: str, page: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    # --warnings makes groff report every problem it finds (unknown macros, bad escapes, lines
    # it cannot break) on stderr.
    return subprocess.run(
        [man, "--warnings", "-E", "UTF-8", "-l", str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_without_warnings(man, name):
    result = render(man, MAN / name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    title, section = name.rsplit(".", 1)
    assert result.stdout.startswith(f"{title.upper()}({section})")
    assert f"fowld {__version__}" in result.stdout  # the footer names this version


def test_rendering_reports_broken_markup(man, tmp_path):
    """The warning check above is real: a page with a mistake in it does warn."""
    broken = tmp_path / "broken.1"
    broken.write_text((MAN / "fowlctl.1").read_text() + ".XY not a macro\n")
    assert "XY" in render(man, broken).stderr


def test_pages_document_every_command_and_option():
    fowlctl_page = (MAN / "fowlctl.1").read_text()
    from fowlctl.cli import COMMANDS

    for command in COMMANDS:
        assert f"'fowlctl {command}'" in fowlctl_page, command
    fowld_page = (MAN / "fowld.1").read_text()
    for option in ("\\-\\-stdio", "\\-\\-mailbox", "\\-\\-profiles", "\\-\\-embedded\\-mailbox"):
        assert option in fowld_page


def test_profile_page_covers_every_key():
    page = (MAN / "fowl-profile.5").read_text()
    documented = set(re.findall(r"^\.B(?:R)? ([a-z\\-]+)", page, re.MULTILINE))
    keys = {
        "description",
        "mailbox",
        "transit\\-relay",
        "code\\-length",
        "code",
        "autostart",
        "restart",
        "services",
        "clients",
        "name",
        "connect",
        "listen\\-port",
        "listen",
        "connect\\-port",
    }
    assert keys <= documented, keys - documented
