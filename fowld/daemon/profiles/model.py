"""What a validated profile is: its values, errors and the result of loading a directory."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from fowld.engine.config import DEFAULT_CODE_LENGTH, DEFAULT_MAILBOX, DEFAULT_TRANSIT_RELAY
from fowld.engine.endpoints import Address

PROFILE_SUFFIX = ".yaml"


class ProfileError(ValueError):
    """A profile that cannot be used; ``str()`` reads ``SOURCE:LINE: problem``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line  # None when the input has no lines (dicts, file names)
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


class RestartPolicy(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


@dataclass(frozen=True)
class ServiceSpec:
    """A service offered to the peer: its streams end at ``connect``."""

    name: str
    connect: Address
    listen_port: int | None = None  # port the peer should listen on


@dataclass(frozen=True)
class ClientSpec:
    """A service wanted from the peer: local programs reach it at ``listen``."""

    name: str
    listen: Address
    connect_port: int | None = None  # port the peer should connect to


@dataclass(frozen=True)
class ProfileDefaults:
    """What profiles that name no mailbox or transit relay use: fowld's settings (``fowld.yaml``)."""

    mailbox: str = DEFAULT_MAILBOX
    transit_relay: str = DEFAULT_TRANSIT_RELAY


BUILT_IN_DEFAULTS = ProfileDefaults()


@dataclass(frozen=True)
class Profile:
    """A validated profile. Equal profiles describe the same session, wherever they came from."""

    name: str
    services: tuple[ServiceSpec, ...] = ()
    clients: tuple[ClientSpec, ...] = ()
    description: str = ""
    mailbox: str = DEFAULT_MAILBOX
    transit_relay: str = DEFAULT_TRANSIT_RELAY
    code_length: int = DEFAULT_CODE_LENGTH
    code: str | None = field(default=None, repr=False)  # a secret: keep it out of logs
    peer: str | None = None  # the pairing this profile meets again, instead of a code
    lifetime: float | None = None  # seconds after which a session ends itself
    autostart: bool = False
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    source: str = field(default="<string>", compare=False)


@dataclass(frozen=True)
class ProfileChanges:
    """Names of profiles that appeared, disappeared or changed between two loads."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileSet:
    """Everything found in a profiles directory: the good, the bad and the risky."""

    profiles: Mapping[str, Profile] = field(default_factory=dict)
    errors: tuple[ProfileError, ...] = ()
    warnings: tuple[str, ...] = ()

    def changes_since(self, previous: ProfileSet) -> ProfileChanges:
        old, new = previous.profiles, self.profiles
        return ProfileChanges(
            added=tuple(sorted(new.keys() - old.keys())),
            removed=tuple(sorted(old.keys() - new.keys())),
            changed=tuple(sorted(n for n in new.keys() & old.keys() if new[n] != old[n])),
        )
