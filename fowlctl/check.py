"""``fowlctl check``: validate profile files offline, exactly as fowld will load them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fowld.daemon.profiles import (
    Profile,
    ProfileError,
    fixed_code_advice,
    insecure_permission_warning,
    load_profile,
)


@dataclass(frozen=True)
class CheckResult:
    file: str
    profile: Profile | None
    error: str | None  # "FILE:LINE: message" when the profile is invalid
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


def check_files(paths: Iterable[str]) -> list[CheckResult]:
    results = []
    for path in paths:
        try:
            profile = load_profile(path)
        except ProfileError as e:
            results.append(CheckResult(path, None, str(e)))
            continue
        found = (insecure_permission_warning(path, profile), fixed_code_advice(path, profile))
        results.append(CheckResult(path, profile, None, tuple(w for w in found if w)))
    return results


def forwards(profile: Profile) -> list[str]:
    """The profile's services and clients, one phrase each."""
    return [f"offers {s.name} -> {s.connect.spec}" for s in profile.services] + [
        f"wants {c.name} <- {c.listen.spec}" for c in profile.clients
    ]


def summary_line(result: CheckResult) -> str:
    """``FILE: ok (profile NAME: what it forwards)`` for a valid profile."""
    p = result.profile
    return f"{result.file}: ok (profile {p.name}: {'; '.join(forwards(p))})"


def result_json(result: CheckResult) -> dict:
    return {
        "file": result.file,
        "ok": result.ok,
        "profile": result.profile.name if result.profile else None,
        "error": result.error,
        "warnings": list(result.warnings),
    }
