"""Shell completions under fowld/data/completions: current with the parsers, and completing for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fowlctl.cli import COMMANDS

REPO = Path(__file__).resolve().parent.parent
COMPLETIONS = REPO / "fowld" / "data" / "completions"
GENERATE = REPO / "packaging" / "generate.py"
FILES = ["bash/fowld", "bash/fowlctl", "zsh/_fowld", "zsh/_fowlctl", "fish/fowld.fish", "fish/fowlctl.fish"]


def test_completions_are_current(tmp_path):
    result = subprocess.run(
        [sys.executable, str(GENERATE), "completions", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(FILES)
    for name in FILES:
        assert (COMPLETIONS / name).read_text() == (tmp_path / name).read_text(), (
            f"fowld/data/completions/{name} is stale: run `make completions`"
        )


@pytest.fixture
def config_home(tmp_path) -> Path:
    """An XDG_CONFIG_HOME with two profiles, and files that are not profiles."""
    profiles = tmp_path / "config" / "fowl" / "profiles"
    profiles.mkdir(parents=True)
    for name in ("ssh-share.yaml", "web-preview.yaml", "old.yml", "notes.txt"):
        (profiles / name).write_text("description: x\n")
    return tmp_path / "config"


# Runs bash's completion function the way readline does: COMP_WORDS holds the words so far,
# the last one being completed, and the function leaves its candidates in COMPREPLY.
BASH_DRIVER = """
source "$1"; shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
_shtab_fowlctl fowlctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "${COMPREPLY[@]}"
"""


def bash_complete(words: list[str], env: dict[str, str], cwd: Path | None = None) -> list[str]:
    result = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            BASH_DRIVER,
            "driver",
            str(COMPLETIONS / "bash/fowlctl"),
            *words,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=30,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return sorted(line for line in result.stdout.splitlines() if line)


def shell_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LC_ALL": "C.UTF-8", **extra}


def test_bash_completes_commands_options_and_profiles(tmp_path, config_home):
    env = shell_env(tmp_path, XDG_CONFIG_HOME=str(config_home))
    assert bash_complete(["fowlctl", ""], env) == sorted(COMMANDS)
    assert bash_complete(["fowlctl", "re"], env) == ["reload"]
    assert bash_complete(["fowlctl", "--"], env) == ["--bus", "--help", "--json", "--version"]
    assert bash_complete(["fowlctl", "invite", "--"], env) == [
        "--bus",
        "--expires",
        "--help",
        "--json",
        "--lifetime",
        "--mailbox",
        "--no-qr",
        "--no-wait",
        "--offer",
        "--pair",
        "--timeout",
        "--transit-relay",
        "--want",
    ]
    assert bash_complete(["fowlctl", "invite", ""], env) == ["ssh-share", "web-preview"]
    assert bash_complete(["fowlctl", "accept", "w"], env) == ["web-preview"]
    assert bash_complete(["fowlctl", "--json", "start", "s"], env) == ["ssh-share"]
    # After PROFILE, accept wants a CODE: no profile names there.
    assert bash_complete(["fowlctl", "accept", "ssh-share", ""], env) == []


def test_bash_profiles_default_to_dot_config(tmp_path, config_home):
    env = shell_env(tmp_path)
    shutil.copytree(config_home, Path(env["HOME"]) / ".config")
    assert bash_complete(["fowlctl", "invite", ""], env) == ["ssh-share", "web-preview"]
    # A relative XDG_CONFIG_HOME is ignored, as fowld ignores it.
    env["XDG_CONFIG_HOME"] = "config"
    assert bash_complete(["fowlctl", "invite", ""], env, cwd=tmp_path) == ["ssh-share", "web-preview"]


def test_bash_completes_nothing_without_profiles(tmp_path):
    env = shell_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "nowhere"))
    assert bash_complete(["fowlctl", "invite", ""], env) == []


def test_bash_check_completes_files(tmp_path, config_home):
    profiles = config_home / "fowl" / "profiles"
    env = shell_env(tmp_path)
    assert "ssh-share.yaml" in bash_complete(["fowlctl", "check", ""], env, cwd=profiles)


def test_zsh_files_parse():
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (Debian package: zsh)")
    for name in ("zsh/_fowld", "zsh/_fowlctl"):
        result = subprocess.run(
            [zsh, "-n", str(COMPLETIONS / name)], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and result.stderr == "", (name, result.stderr)


def fish_complete(line: str, env: dict[str, str]) -> list[str]:
    command = f"source {COMPLETIONS / 'fish/fowlctl.fish'}; complete --do-complete '{line}'"
    result = subprocess.run(
        ["fish", "--no-config", "-c", command], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return sorted(candidate.split("\t")[0] for candidate in result.stdout.splitlines())


def test_fish_completes_commands_options_and_profiles(tmp_path, config_home):
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (Debian package: fish)")
    env = shell_env(tmp_path, XDG_CONFIG_HOME=str(config_home))
    assert fish_complete("fowlctl ", env) == sorted(COMMANDS)
    assert fish_complete("fowlctl invite ", env) == ["ssh-share", "web-preview"]
    assert "--no-wait" in fish_complete("fowlctl invite --", env)
