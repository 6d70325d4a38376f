"""The profiles the daemon knows: loaded at start and on reload, with their errors.

A profile that fails to load is logged and skipped; the others work. Its
name is remembered so that starting it says why it cannot start.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import Logger

from fowld.daemon.errors import InvalidProfile, ProfileNotFound
from fowld.daemon.profiles import (
    BUILT_IN_DEFAULTS,
    PROFILE_SUFFIX,
    Profile,
    ProfileChanges,
    ProfileDefaults,
    ProfileError,
    ProfileSet,
    load_profiles,
)

log = Logger()


class ProfileStore:
    def __init__(self, directory: Path, defaults: ProfileDefaults = BUILT_IN_DEFAULTS):
        self.directory = directory
        self.defaults = defaults  # for profiles that name no mailbox or transit relay
        self.current = ProfileSet()

    def load(self) -> ProfileChanges:
        """Read the directory again; returns what changed since the last load."""
        found = load_profiles(self.directory, self.defaults)
        for error in found.errors:
            log.error("profile skipped: {error}", error=str(error))
        for warning in found.warnings:
            log.warn("{warning}", warning=warning)
        changes = found.changes_since(self.current)
        self.current = found
        log.info(
            "{count} profiles in {directory}; {errors} with errors",
            count=len(found.profiles),
            directory=str(self.directory),
            errors=len(found.errors),
        )
        return changes

    @property
    def profiles(self) -> list[Profile]:
        return [self.current.profiles[name] for name in sorted(self.current.profiles)]

    @property
    def errors(self) -> tuple[ProfileError, ...]:
        return self.current.errors

    def get(self, name: str) -> Profile:
        """The profile called ``name``, or an error saying why there is none."""
        profile = self.current.profiles.get(name)
        if profile is not None:
            return profile
        for error in self.current.errors:
            if Path(error.source).name == name + PROFILE_SUFFIX:
                raise InvalidProfile(f"profile {name!r} is invalid: {error}")
        known = ", ".join(sorted(self.current.profiles)) or "none"
        raise ProfileNotFound(f"no profile {name!r} in {self.directory} (known: {known})")
