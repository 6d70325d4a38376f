"""Sessions and profiles as fowld describes them in D-Bus properties, and their JSON form.

The JSON keys are part of fowlctl's interface for scripts: add keys, never
rename or remove them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# States after which a session object disappears, and states where it forwards.
ENDED_STATES = frozenset({"closed", "failed"})
CONNECTED = "connected"


@dataclass(frozen=True)
class ServiceView:
    name: str
    connect: str
    state: str  # ready | requesting | failed
    reason: str


@dataclass(frozen=True)
class ClientView:
    name: str
    listen: str
    port: int  # bound TCP port, 0 when none
    state: str  # listening | waiting | failed
    reason: str = ""  # why it failed (ClientReasons)


@dataclass(frozen=True)
class ConnectionView:
    id: int
    service: str
    direction: str  # incoming | outgoing
    bytes_in: int
    bytes_out: int
    opened_usec: int


@dataclass(frozen=True)
class SessionView:
    object_path: str
    id: str
    profile: str
    state: str
    reason: str
    code: str
    verifier: str
    peer_connected: bool
    path: str  # direct | relay | unknown
    hint: str
    generation: int
    mailbox_url: str
    mailbox_state: str
    services: tuple[ServiceView, ...]
    clients: tuple[ClientView, ...]
    bytes_in: int
    bytes_out: int
    open_connections: int
    total_connections: int
    created_usec: int
    restarts: int
    refused_connections: int = 0
    lost_connections: int = 0
    connections: tuple[ConnectionView, ...] = ()  # open now, with their bytes so far

    @property
    def settled(self) -> bool:
        """Connected, and every service and client has its final answer."""
        return (
            self.state == CONNECTED
            and all(s.state != "requesting" for s in self.services)
            and all(c.state != "waiting" for c in self.clients)
        )


def session_from_properties(object_path: str, props: Mapping[str, object]) -> SessionView:
    """Decode the properties of an ``org.fowl.Fowld1.Session`` object (missing ones are empty)."""

    def text(key: str) -> str:
        value = props.get(key)
        return "" if value is None else str(value)

    def number(key: str) -> int:
        value = props.get(key)
        return int(value) if value is not None else 0

    reasons = {str(n): str(r) for n, r in props.get("ClientReasons", ())}
    return SessionView(
        object_path=object_path,
        id=text("Id"),
        profile=text("Profile"),
        state=text("State"),
        reason=text("StateReason"),
        code=text("Code"),
        verifier=text("Verifier"),
        peer_connected=bool(props.get("PeerConnected", False)),
        path=text("Path") or "unknown",
        hint=text("Hint"),
        generation=number("Generation"),
        mailbox_url=text("MailboxUrl"),
        mailbox_state=text("MailboxState"),
        services=tuple(
            ServiceView(str(n), str(c), str(s), str(r)) for n, c, s, r in props.get("Services", ())
        ),
        clients=tuple(
            ClientView(str(n), str(ls), int(p), str(s), reasons.get(str(n), ""))
            for n, ls, p, s in props.get("Clients", ())
        ),
        bytes_in=number("BytesIn"),
        bytes_out=number("BytesOut"),
        open_connections=number("OpenConnections"),
        total_connections=number("TotalConnections"),
        created_usec=number("CreatedUSec"),
        restarts=number("Restarts"),
        refused_connections=number("RefusedConnections"),
        lost_connections=number("LostConnections"),
        connections=tuple(
            ConnectionView(int(i), str(n), str(d), int(bi), int(bo), int(t))
            for i, n, d, bi, bo, t in props.get("Connections", ())
        ),
    )


@dataclass(frozen=True)
class ProfileView:
    name: str
    description: str
    path: str
    services: tuple[str, ...]  # "NAME -> CONNECT"
    clients: tuple[str, ...]  # "NAME <- LISTEN"
    autostart: bool
    has_code: bool
    restart: str
    peer: str = ""  # the pairing a `peer:` profile meets


def profile_from_dict(entry: Mapping[str, object]) -> ProfileView:
    """Decode one entry of the manager's ``Profiles`` property."""
    return ProfileView(
        name=str(entry.get("name", "")),
        description=str(entry.get("description", "")),
        path=str(entry.get("path", "")),
        services=tuple(str(s) for s in entry.get("services", ())),
        clients=tuple(str(c) for c in entry.get("clients", ())),
        autostart=bool(entry.get("autostart", False)),
        has_code=bool(entry.get("has_code", False)),
        restart=str(entry.get("restart", "")),
        peer=str(entry.get("peer", "")),
    )


def session_json(s: SessionView) -> dict:
    return {
        "id": s.id,
        "object_path": s.object_path,
        "profile": s.profile,
        "state": s.state,
        "reason": s.reason,
        "code": s.code,
        "verifier": s.verifier,
        "peer_connected": s.peer_connected,
        "path": s.path,
        "hint": s.hint,
        "generation": s.generation,
        "mailbox_url": s.mailbox_url,
        "mailbox_state": s.mailbox_state,
        "services": [
            {"name": v.name, "connect": v.connect, "state": v.state, "reason": v.reason} for v in s.services
        ],
        "clients": [
            {"name": c.name, "listen": c.listen, "port": c.port, "state": c.state} for c in s.clients
        ],
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "open_connections": s.open_connections,
        "total_connections": s.total_connections,
        "created_usec": s.created_usec,
        "restarts": s.restarts,
        "connections": [
            {
                "id": c.id,
                "service": c.service,
                "direction": c.direction,
                "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out,
                "opened_usec": c.opened_usec,
            }
            for c in s.connections
        ],
    }


def profile_json(p: ProfileView) -> dict:
    return {
        "name": p.name,
        "description": p.description,
        "path": p.path,
        "services": list(p.services),
        "clients": list(p.clients),
        "autostart": p.autostart,
        "has_code": p.has_code,
        "restart": p.restart,
        "peer": p.peer,
    }


def profile_errors_json(errors: Sequence[tuple[str, str]]) -> list[dict]:
    return [{"file": str(f), "message": str(m)} for f, m in errors]
