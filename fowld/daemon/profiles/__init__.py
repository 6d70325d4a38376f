"""Forwarding profiles: YAML files declaring what one side offers and wants.

A profile at ``$XDG_CONFIG_HOME/fowl/profiles/NAME.yaml`` describes one
session: the services this side offers to the peer, the clients it wants from
the peer, and how to reach the mailbox. Everything is validated when the file
is loaded, and every problem is reported as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import yaml

from fowld.daemon.profiles.model import (
    BUILT_IN_DEFAULTS,
    PROFILE_SUFFIX,
    ClientSpec,
    Profile,
    ProfileChanges,
    ProfileDefaults,
    ProfileError,
    ProfileSet,
    RestartPolicy,
    ServiceSpec,
)
from fowld.daemon.profiles.reader import Reader, Value
from fowld.daemon.profiles.schema import check_profile, check_settings

MAX_PROFILE_BYTES = 256 * 1024  # profiles are a few lines long; refuse anything absurd
# What YAML counts as a line break, so that every line number agrees with PyYAML's marks.
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
T = TypeVar("T")


def _yaml_error(source: str, text: str, e: yaml.YAMLError) -> ProfileError:
    if isinstance(e, yaml.reader.ReaderError):
        line = len(_YAML_LINE_BREAK.findall(text[: e.position])) + 1
        char = f" (character #x{e.character:04x})" if isinstance(e.character, int) else ""
        return ProfileError(source, line, f"invalid YAML: {e.reason}{char}")
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        what = ", ".join(part for part in (e.context, e.problem) if part)
        return ProfileError(source, line, f"invalid YAML: {what}")
    return ProfileError(source, None, f"invalid YAML: {e}")


def _parse_yaml(text: str, source: str, check: Callable[[Value], T], what: str = "profile") -> T:
    """Read YAML text into located values and ``check`` them; every problem is a ProfileError."""
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
    except yaml.YAMLError as e:
        raise _yaml_error(source, text, e) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ProfileError(source, 1, f"the {what} is empty")
        return check(Reader(source, loader).from_node(node))
    except yaml.YAMLError as e:
        raise _yaml_error(source, text, e) from None
    except RecursionError:
        raise ProfileError(source, None, "values are nested too deeply") from None
    finally:
        loader.dispose()


def parse_profile(
    text: str, name: str, source: str = "<string>", defaults: ProfileDefaults = BUILT_IN_DEFAULTS
) -> Profile:
    """Validate a profile written as YAML text."""
    return _parse_yaml(text, source, lambda root: check_profile(root, name, source, defaults))


def profile_from_dict(
    data: Mapping, name: str, source: str = "<dict>", defaults: ProfileDefaults = BUILT_IN_DEFAULTS
) -> Profile:
    """Validate a profile given as Python values (as decoded from YAML, JSON or D-Bus)."""
    return check_profile(Reader(source).from_python(data), name, source, defaults)


def _read_text(path: Path) -> str:
    source = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise ProfileError(source, None, f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(source, None, f"larger than {MAX_PROFILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ProfileError(source, line, "not valid UTF-8 text") from None


def settings_from_dict(
    data: Mapping, source: str, base: ProfileDefaults = BUILT_IN_DEFAULTS
) -> ProfileDefaults:
    """fowld's settings given as values (its command line), over ``base``."""
    return check_settings(Reader(source).from_python(data), source, base)


def load_settings(path: str | os.PathLike) -> ProfileDefaults:
    """fowld's settings file (``fowld.yaml``); built-in defaults when there is none."""
    path = Path(path)
    if not path.exists():
        return BUILT_IN_DEFAULTS
    return _parse_yaml(_read_text(path), str(path), lambda root: check_settings(root, str(path)), "file")


def load_profile(path: str | os.PathLike, defaults: ProfileDefaults = BUILT_IN_DEFAULTS) -> Profile:
    """Load and validate one profile file; its name is the file name without ``.yaml``."""
    path = Path(path)
    source = str(path)
    if path.suffix != PROFILE_SUFFIX:
        # fowld reads only NAME.yaml: a file it would skip must not pass a check either
        raise ProfileError(source, None, f"ignored: profile files must end in {PROFILE_SUFFIX}")
    return parse_profile(_read_text(path), name=path.stem, source=source, defaults=defaults)


def config_dir() -> Path:
    """fowl's configuration: ``$XDG_CONFIG_HOME/fowl``, by default ``~/.config/fowl``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says relative paths are invalid and must be ignored.
    config = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return config / "fowl"


def profiles_dir() -> Path:
    """Where profiles live: ``$XDG_CONFIG_HOME/fowl/profiles``, by default under ``~/.config``."""
    return config_dir() / "profiles"


def settings_file() -> Path:
    """fowld's settings: ``$XDG_CONFIG_HOME/fowl/fowld.yaml``."""
    return config_dir() / "fowld.yaml"


def insecure_permission_warning(path: str | os.PathLike, profile: Profile | None = None) -> str | None:
    """A warning when other users could read a profile's code or change the profile."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    problems = []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        if profile is None:
            try:
                profile = load_profile(path)
            except ProfileError:
                return None  # reported as an error by whoever loads it
        if profile.code is not None:
            problems.append("other users can read its fixed code")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append("other users can change what it forwards")
    if not problems:
        return None
    return f"{path}: {' and '.join(problems)}; fix with: chmod go-rwx {path}"


def _fixed(client: ClientSpec) -> bool:
    """Whether the client listens on one fixed address (port 0 picks a fresh one each time)."""
    return client.listen.port != 0


def _check_listeners_free(profile: Profile, taken: dict[str, str]) -> None:
    """Two profiles that listen on one address cannot both run: refuse the second one."""
    for i, client in enumerate(profile.clients):
        other = taken.get(client.listen.spec)
        if other is not None and _fixed(client):
            problem = f"clients[{i}].listen: {client.listen.spec!r} is used by profile {other!r} too"
            raise ProfileError(profile.source, None, problem)


def fixed_code_advice(path: str | os.PathLike, profile: Profile) -> str | None:
    """For a profile with a fixed code: why a pairing is safer, and how to switch."""
    if profile.code is None:
        return None
    return (
        f"{path}: a fixed code can be guessed online by anyone who reaches the mailbox;"
        f" a pairing is the safe way: run `fowlctl invite {profile.name} --pair NAME` once"
        " (the peer accepts with --pair), then replace `code:` with `peer: NAME`"
    )


def load_profiles(
    directory: str | os.PathLike | None = None, defaults: ProfileDefaults = BUILT_IN_DEFAULTS
) -> ProfileSet:
    """Load every ``*.yaml`` profile in a directory; a bad file never stops the others."""
    directory = Path(directory) if directory is not None else profiles_dir()
    try:
        paths = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return ProfileSet()
    except OSError as e:
        problem = f"cannot list profiles: {e.strerror or e}"
        return ProfileSet(errors=(ProfileError(str(directory), None, problem),))
    profiles, errors, warnings = {}, [], []
    listeners: dict[str, str] = {}  # listen address -> the profile that listens there
    for path in paths:
        if path.suffix not in (PROFILE_SUFFIX, ".yml"):
            continue  # not meant as a profile; a .yml file is, and is reported as skipped
        try:
            profile = load_profile(path, defaults)
            _check_listeners_free(profile, listeners)
        except ProfileError as e:
            errors.append(e)
            continue
        listeners.update({c.listen.spec: profile.name for c in profile.clients if _fixed(c)})
        profiles[profile.name] = profile
        if warning := insecure_permission_warning(path, profile):
            warnings.append(warning)
        if advice := fixed_code_advice(path, profile):
            warnings.append(advice)
    return ProfileSet(profiles=profiles, errors=tuple(errors), warnings=tuple(warnings))


__all__ = [
    "BUILT_IN_DEFAULTS",
    "MAX_PROFILE_BYTES",
    "PROFILE_SUFFIX",
    "ClientSpec",
    "Profile",
    "ProfileChanges",
    "ProfileDefaults",
    "ProfileError",
    "ProfileSet",
    "RestartPolicy",
    "ServiceSpec",
    "fixed_code_advice",
    "insecure_permission_warning",
    "load_profile",
    "load_profiles",
    "load_settings",
    "parse_profile",
    "profile_from_dict",
    "profiles_dir",
    "settings_file",
    "settings_from_dict",
]
