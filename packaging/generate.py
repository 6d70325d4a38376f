"""Write the man pages and shell completions that are derived from the argument parsers.

    python packaging/generate.py man [--out DIR]           fowld.1 and fowlctl.1
    python packaging/generate.py completions [--out DIR]   bash, zsh and fish files

The defaults write into fowld/data/, where the committed copies live; `make man` and
`make completions` run this. tests/test_manpages.py and tests/test_completions.py
regenerate into a temporary directory and fail when the committed files are stale.
fowl-profile.5 is written by hand and not touched here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "fowld" / "data"
sys.path.insert(0, str(ROOT))

# argparse wraps usage lines to the terminal's width: pin it so output never depends on it.
os.environ["COLUMNS"] = "80"

try:
    import argparse_manpage.manpage
    import shtab
except ImportError as e:
    sys.exit(f"packaging/generate.py needs {e.name}: pip install -e '.[test]' (or run `make setup`)")

import fowlctl.cli  # noqa: E402
import fowld.cli  # noqa: E402
from fowld import __version__  # noqa: E402

MANUAL = "fowld manual"

# --- man pages --------------------------------------------------------------------------------

SEE_ALSO = {
    "fowld": ["fowlctl(1)", "fowl-profile(5)", "systemctl(1)", "journalctl(1)"],
    "fowlctl": ["fowld(1)", "fowl-profile(5)"],
}

FILES = {
    "fowld": [
        ("$XDG_CONFIG_HOME/fowl/profiles/NAME.yaml", "forwarding profiles (see fowl-profile(5))"),
        ("/usr/lib/systemd/user/fowld.service", "the systemd user unit (installed by the Debian package)"),
        ("/usr/share/dbus-1/services/org.fowl.Fowld1.service", "D-Bus activation of the unit"),
        ("/usr/share/doc/fowld/examples/", "example profiles to copy"),
    ],
    "fowlctl": [
        ("$XDG_CONFIG_HOME/fowl/profiles/NAME.yaml", "the profiles fowld loads (see fowl-profile(5))"),
    ],
}

ENVIRONMENT = {
    "fowld": [
        ("XDG_CONFIG_HOME", "where the profiles directory is; ~/.config when unset or relative"),
        ("DBUS_SESSION_BUS_ADDRESS", "the session bus the daemon owns org.fowl.Fowld1 on"),
        ("FOWL_DIRECT_ADDRESSES", "comma-separated default for --direct-address"),
        ("NOTIFY_SOCKET, WATCHDOG_USEC", "set by systemd: readiness, status and watchdog pings"),
    ],
    "fowlctl": [
        ("DBUS_SESSION_BUS_ADDRESS", "the bus to find fowld on, unless --bus is given"),
        ("XDG_RUNTIME_DIR", "without DBUS_SESSION_BUS_ADDRESS, the bus is $XDG_RUNTIME_DIR/bus"),
    ],
}

NAME_LINES = {
    "fowld": "forward TCP and UNIX streams over Magic Wormhole Dilation",
    "fowlctl": "control fowld, the Magic Wormhole forwarding daemon",
}


def roff(text: str) -> str:
    """Escape plain text for roff: backslashes, hyphens, and control characters at line starts."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def epilog_sections(epilog: str) -> list[tuple[str, str]]:
    """Split a RawDescription epilog into man sections.

    A paragraph whose first line ends in ':' ("examples:", "exit codes:") becomes a section of
    that name, kept preformatted as the --help output shows it; other paragraphs join the
    section before them.
    """
    sections: list[tuple[str, list[str]]] = []
    for paragraph in epilog.strip("\n").split("\n\n"):
        first, _, rest = paragraph.partition("\n")
        if first.endswith(":") and not first.startswith(" "):
            heading = first[:-1].split(" (")[0].upper()
            heading = {"EXIT CODES": "EXIT STATUS"}.get(heading, heading)
            sections.append((heading, [".nf\n" + roff(rest.rstrip()) + "\n.fi"]))
        elif sections:
            sections[-1][1].append(".PP\n" + roff(paragraph.strip()))
        else:
            sections.append(("NOTES", [roff(paragraph.strip())]))
    return [(heading, "\n".join(parts)) for heading, parts in sections]


def tagged_list(entries: list[tuple[str, str]]) -> str:
    return "\n".join(f".TP\n.B {roff(term)}\n{roff(text)}" for term, text in entries)


def see_also(references: list[str]) -> str:
    """``.BR name (N),`` one per line, the last without its comma."""
    lines = []
    for number, reference in enumerate(references, 1):
        name, section = reference[:-1].split("(")
        lines.append(f".BR {roff(name)} ({section})" + ("," if number < len(references) else ""))
    return "\n".join(lines)


def manpage(prog: str, build: Callable[[], argparse.ArgumentParser]) -> str:
    parser = build()
    epilog, parser.epilog = parser.epilog or "", None
    if prog == "fowlctl":
        parser._positionals.title = "commands"  # fowlctl's only positional is the command
    page = argparse_manpage.manpage.Manpage(parser)
    page.source = f"fowld {__version__}"
    page.manual = MANUAL
    page.description = NAME_LINES[prog]
    # No date: a page regenerated later must come out byte for byte the same.
    page.date = " "
    for heading, content in epilog_sections(epilog):
        page.add_section(heading, ">", content)
    page.add_section("environment", ">", tagged_list(ENVIRONMENT[prog]))
    page.add_section("files", ">", tagged_list(FILES[prog]))
    page.add_section("see also", ">", see_also(SEE_ALSO[prog]))
    return str(page)


def write_man(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for prog, build in (("fowld", fowld.cli.build_parser), ("fowlctl", fowlctl.cli.build_parser)):
        path = out / f"{prog}.1"
        path.write_text(manpage(prog, build))
        written.append(path)
    return written


# --- completions ------------------------------------------------------------------------------

# Profile names are the *.yaml stems in $XDG_CONFIG_HOME/fowl/profiles; as in fowld, a relative
# XDG_CONFIG_HOME counts as unset.
PROFILE_FUNCTIONS = {
    "bash": """\
_fowl_profiles() {
  local dir=${XDG_CONFIG_HOME:-}
  [[ $dir == /* ]] || dir=$HOME/.config
  local f names=()
  for f in "$dir"/fowl/profiles/*.yaml; do
    [[ -e $f ]] || continue
    f=${f##*/}
    names+=("${f%.yaml}")
  done
  compgen -W "${names[*]}" -- "$1"
}
""",
    "zsh": """\
_fowl_profiles() {
  local dir=${XDG_CONFIG_HOME:-}
  [[ $dir == /* ]] || dir=$HOME/.config
  local -a names
  names=( $dir/fowl/profiles/*.yaml(N-.:t:r) )
  _wanted profiles expl 'profile' compadd -a names
}
""",
    "fish": """\
function __fowl_profiles
  set -l dir $XDG_CONFIG_HOME
  string match -q -- '/*' "$dir"; or set dir $HOME/.config
  for f in $dir/fowl/profiles/*.yaml
    string replace -r '\\.yaml$' '' -- (path basename -- $f)
  end
end
""",
}

PROFILE_COMPLETE = {"bash": "_fowl_profiles", "zsh": "_fowl_profiles", "fish": "(__fowl_profiles)"}

COMPLETION_FILES = {
    "bash": "{prog}",
    "zsh": "_{prog}",
    "fish": "{prog}.fish",
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def annotated(prog: str) -> argparse.ArgumentParser:
    """The parser, with shtab's hints for arguments that name profiles, files or directories."""
    if prog == "fowld":
        parser = fowld.cli.build_parser()
        for action in parser._actions:
            if action.dest == "profiles":
                action.complete = shtab.DIRECTORY
        return parser
    parser = fowlctl.cli.build_parser()
    for sub in _subparsers(parser).values():
        for action in sub._actions:
            if action.dest == "profile":
                action.complete = PROFILE_COMPLETE
            elif action.dest == "files":
                action.complete = shtab.FILE
    return parser


def _own_header(script: str, shell: str, prog: str) -> str:
    """Replace shtab's usage comment (it suggests per-user paths) with where ours come from."""
    lines = script.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("# AUTOMATICALLY GENERATED")), None)
    if start is not None:
        end = start
        while end < len(lines) and lines[end].startswith("#"):
            end += 1
        lines[start:end] = [
            f"# {shell} completion for {prog}; generated from the argument parser by"
            " `make completions` (packaging/generate.py): do not edit."
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def completion(prog: str, shell: str) -> str:
    preamble = PROFILE_FUNCTIONS[shell] if prog == "fowlctl" else ""
    return _own_header(shtab.complete(annotated(prog), shell=shell, preamble=preamble), shell, prog)


def write_completions(out: Path) -> list[Path]:
    written = []
    for shell, pattern in COMPLETION_FILES.items():
        (out / shell).mkdir(parents=True, exist_ok=True)
        for prog in ("fowld", "fowlctl"):
            path = out / shell / pattern.format(prog=prog)
            path.write_text(completion(prog, shell))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate man pages or shell completions.")
    parser.add_argument("what", choices=["man", "completions"])
    parser.add_argument("--out", type=Path, help="directory to write into (default: fowld/data/WHAT)")
    args = parser.parse_args(argv)
    if args.what == "man":
        written = write_man(args.out or DATA / "man")
    else:
        written = write_completions(args.out or DATA / "completions")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
