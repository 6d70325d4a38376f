"""The pairings this side keeps: one JSON file each in ``$XDG_STATE_HOME/fowl/pairings``.

The directory is 0700 and every file 0600, written atomically (a temporary
file in the same directory, fsync, rename), so a crash leaves the old file or
the new one, never half of one. A file that cannot be read, does not parse,
or that other users could read (its secret is no longer ours alone) is
reported with its path and skipped; the others work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.logger import Logger

from fowld.daemon.errors import InvalidArgs, NoPairing
from fowld.engine import rules
from fowld.engine.pairing import ROLES, SECRET_BYTES, PairingAgreed

log = Logger()
SUFFIX = ".json"
FORMAT = 1
MAX_FILE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Pairing:
    name: str  # what this side calls the pairing
    peer_name: str  # what the peer calls it
    secret: bytes = field(repr=False)
    role: str  # "inviter" or "acceptor": which meeting points are ours
    mailbox: str
    created: float
    last_met: float
    expires: float | None = None
    # (slot, index) of the meeting point this side last waited at: after a crash its
    # claim may still be there, so a restart starts at another one.
    standby: tuple[int, int] | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def summary(self, running: bool) -> dict[str, object]:
        """Everything but the secret."""
        return {
            "name": self.name,
            "peer_name": self.peer_name,
            "mailbox": self.mailbox,
            "created": self.created,
            "last_met": self.last_met,
            "expires": self.expires or 0.0,
            "running": running,
        }


def pairings_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME", "")
    state = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return state / "fowl" / "pairings"


def _decode(path: Path) -> Pairing:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            "other users can read or change it, so its secret is not ours alone:"
            f" `fowlctl forget {path.stem}` and pair again"
        )
    raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a pairing file of format {FORMAT}")
    secret = bytes.fromhex(data["secret"])
    if len(secret) != SECRET_BYTES or data["role"] not in ROLES or data["name"] != path.stem:
        raise ValueError("its secret, role or name is malformed")
    expires = data.get("expires")
    standby = data.get("standby")
    return Pairing(
        name=str(data["name"]),
        peer_name=str(data["peer_name"]),
        secret=secret,
        role=data["role"],
        mailbox=str(data["mailbox"]),
        created=float(data["created"]),
        last_met=float(data["last_met"]),
        expires=None if expires is None else float(expires),
        standby=tuple(int(n) for n in standby) if isinstance(standby, list) and len(standby) == 2 else None,
    )


def _encode(p: Pairing) -> bytes:
    data = {
        "format": FORMAT,
        "name": p.name,
        "peer_name": p.peer_name,
        "secret": p.secret.hex(),
        "role": p.role,
        "mailbox": p.mailbox,
        "created": p.created,
        "last_met": p.last_met,
        "expires": p.expires,
        "standby": list(p.standby) if p.standby else None,
    }
    return json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n"


class PairingStore:
    """Reads and writes pairing files; each read goes to the disk, so a forget elsewhere counts."""

    def __init__(self, directory: Path | None = None):
        self.directory = directory or pairings_dir()

    def _path(self, name: str) -> Path:
        try:
            rules.check_name(name, "pairing name")
        except rules.RuleError as e:
            raise InvalidArgs(str(e)) from None
        return self.directory / f"{name}{SUFFIX}"

    def load(self) -> tuple[list[Pairing], list[tuple[str, str]]]:
        """Every readable pairing, and (file, problem) for each one skipped."""
        found, errors = [], []
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.suffix == SUFFIX)
        except FileNotFoundError:
            return [], []
        except OSError as e:
            return [], [(str(self.directory), f"cannot list pairings: {e.strerror or e}")]
        for path in paths:
            try:
                found.append(_decode(path))
            except (OSError, ValueError, KeyError, TypeError) as e:
                problem = f"{path}: pairing skipped: {e}"
                log.error("{problem}", problem=problem)
                errors.append((str(path), problem))
        return found, errors

    def get(self, name: str) -> Pairing:
        path = self._path(name)
        try:
            return _decode(path)
        except FileNotFoundError:
            raise NoPairing(
                f"no pairing named {name!r} (it was never made, or it was forgotten);"
                f" pair again with `fowlctl invite PROFILE --pair {name}`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise NoPairing(f"{path}: pairing unusable: {e}") from None

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def save(self, pairing: Pairing) -> None:
        path = self._path(pairing.name)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        fd, temporary = tempfile.mkstemp(prefix=f".{pairing.name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600
                f.write(_encode(pairing))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def store_new(self, agreed: PairingAgreed, mailbox: str) -> Pairing:
        now = time.time()
        pairing = Pairing(
            agreed.name, agreed.peer_name, agreed.secret, agreed.role, mailbox, now, now, agreed.expires_at
        )
        self.save(pairing)
        return pairing

    def touch(self, name: str, **changes: object) -> None:
        """Note a meeting now, or other ``changes`` (if the pairing still exists)."""
        changes = changes or {"last_met": time.time()}
        try:
            self.save(dataclasses.replace(self.get(name), **changes))
        except NoPairing:
            pass

    def forget(self, name: str) -> bool:
        """Delete a pairing; False if there was none."""
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
