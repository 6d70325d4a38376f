"""Pairing: what two peers agree on once, and everything later meetings derive from it.

A pairing is a 32-byte secret that both sides derive from the wormhole key of
the session that created it (``wormhole.derive_key`` with our own purpose
string), once the peer's versions have arrived: it is never sent. Every later
meeting is a fresh SPAKE2 exchange on a code derived from the secret, the
role of the side that waits there, a time slot and a candidate index, so that
a meeting point that a crashed side or a squatter holds is simply skipped.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

# Advertised in our app versions; upstream fowl ignores features it does not know.
PAIRING_FEATURE = "pairing-v1"
SECRET_PURPOSE = "fowl.pairing.v1.secret"
SECRET_BYTES = 32
# Meeting points move to new nameplates every slot: a stale claim or a squatter
# blocks at most one slot, and a side may try the neighbouring slots, so clocks
# may disagree by up to a slot.
SLOT_SECONDS = 600
CANDIDATES = 3  # meeting points per role and slot: the next is used when one is blocked
NAMEPLATE_DIGITS = 30  # ~100 bits: never equal to a nameplate the mailbox allocates
ROLES = ("inviter", "acceptor")


# Mailbox messages of our own, sent only to peers that advertise pairing.
FORGET_MESSAGE = "fowl-forget"  # the peer's person forgot the pairing: forget it too
AWAY_MESSAGE = "fowl-away"  # the peer stops (its daemon is stopping), not for good


class PairingRefused(ValueError):
    """Why no pairing was stored although this side asked for one."""


@dataclass(frozen=True)
class PairingRequest:
    """What this side asks for: a pairing it calls ``name``, optionally expiring."""

    name: str
    expires_at: float | None = None  # seconds since the epoch

    def advertised(self) -> dict:
        offer: dict = {"name": self.name}
        if self.expires_at is not None:
            offer["expires"] = int(self.expires_at)
        return offer


@dataclass(frozen=True)
class PairingAgreed:
    """The outcome on one side: the secret and what the peer said about itself."""

    name: str
    peer_name: str
    secret: bytes
    role: str  # ours: "inviter" (allocated the code) or "acceptor"
    expires_at: float | None


FEATURES = ("core-v1", PAIRING_FEATURE)


def app_versions(request: PairingRequest | None) -> dict:
    """Our app versions: the features, and the pairing we ask for (if any)."""
    fowl: dict = {"features": list(FEATURES)}
    if request is not None:
        fowl["pairing"] = request.advertised()
    return {"fowl": fowl}


def understands_pairing(versions: dict) -> bool:
    fowl = versions.get("fowl") if isinstance(versions, dict) else None
    found = fowl.get("features") if isinstance(fowl, dict) else None
    return isinstance(found, list) and PAIRING_FEATURE in found


def peer_offer(versions: dict) -> dict:
    """The peer's pairing offer, or why there is none (``PairingRefused``)."""
    if not understands_pairing(versions):
        raise PairingRefused("the peer's fowl does not support pairing (it forwards as usual)")
    offer = versions["fowl"].get("pairing")
    if not isinstance(offer, dict):
        raise PairingRefused("the peer did not ask for a pairing (it needs --pair too)")
    name = offer.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise PairingRefused("the peer's pairing offer is malformed")
    return offer


def agree(request: PairingRequest, role: str, versions: dict, secret: bytes) -> PairingAgreed:
    """Combine our request with the peer's offer; the earlier expiry of the two applies."""
    offer = peer_offer(versions)
    ours = None if request.expires_at is None else int(request.expires_at)  # as advertised
    theirs = offer.get("expires")
    expiries = [e for e in (ours, theirs) if isinstance(e, int | float) and not isinstance(e, bool)]
    return PairingAgreed(request.name, offer["name"], secret, role, min(expiries) if expiries else None)


def other_role(role: str) -> str:
    return ROLES[1 - ROLES.index(role)]


def slot_at(seconds: float) -> int:
    return int(seconds // SLOT_SECONDS)


def _mac(secret: bytes, *parts: object) -> bytes:
    message = "|".join(str(p) for p in parts).encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).digest()


@dataclass(frozen=True, order=True)
class MeetingPoint:
    """Where the side of ``role`` waits during ``slot``: candidate ``index``."""

    slot: int
    index: int
    role: str

    def code(self, secret: bytes) -> str:
        """``NAMEPLATE-PASSWORD``: a digits-only nameplate and a 256-bit password, both secret-derived."""
        number = int.from_bytes(_mac(secret, "nameplate", self.role, self.slot, self.index), "big")
        nameplate = str(10 ** (NAMEPLATE_DIGITS - 1) + number % (9 * 10 ** (NAMEPLATE_DIGITS - 1)))
        password = _mac(secret, "password", self.role, self.slot, self.index).hex()
        return f"{nameplate}-{password}"


def meeting_points(role: str, now: float) -> list[MeetingPoint]:
    """Where to look for the side of ``role``: this slot first, then its neighbours, each candidate."""
    slot = slot_at(now)
    return [MeetingPoint(s, index, role) for index in range(CANDIDATES) for s in (slot, slot - 1, slot + 1)]


__all__ = [
    "AWAY_MESSAGE",
    "CANDIDATES",
    "FEATURES",
    "FORGET_MESSAGE",
    "PAIRING_FEATURE",
    "SECRET_BYTES",
    "SECRET_PURPOSE",
    "SLOT_SECONDS",
    "MeetingPoint",
    "PairingAgreed",
    "PairingRefused",
    "PairingRequest",
    "agree",
    "app_versions",
    "understands_pairing",
    "meeting_points",
    "other_role",
    "slot_at",
]
