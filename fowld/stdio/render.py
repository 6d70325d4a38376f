"""``fowld --stdio`` output: each session event as upstream's JSON lines (plus our extensions)."""

from __future__ import annotations

import time

from fowld.engine import events
from fowld.engine.status import SessionStatus


def render_event(event: events.Event) -> list[dict]:
    """The output lines (upstream's kinds and fields) for one session event."""
    match event:
        case events.Welcome(url, welcome):
            return [{"kind": "welcome", "url": url, "welcome": welcome}]
        case events.CodeAllocated(code):
            return [{"kind": "code-allocated", "code": code}]
        case events.PeerConnected(verifier, versions):
            return [{"kind": "peer-connected", "verifier": verifier, "versions": versions}]
        case events.ClientListening(name, listen, port):
            return [{"kind": "listening", "name": name, "listening_port": port, "listen": listen}]
        case events.ClientFailed(name, reason):
            return [{"kind": "error", "message": f"cannot listen for {name!r}: {reason}", "name": name}]
        case events.ClientStopped(name, reason):
            return [{"kind": "listener-stopped", "name": name, "reason": reason}]
        case events.ServiceReady(name, connect, local_port, _):
            return [{"kind": "awaiting-connect", "name": name, "local_port": local_port, "connect": connect}]
        case events.ServiceFailed(name, reason):
            return [{"kind": "listening-failed", "name": name, "reason": reason}]
        case events.Refused(what, name, reason):
            return [{"kind": "error", "message": f"refused {what}: {reason}", "refused": what, "name": name}]
        case events.StreamOpened(id, name, direction):
            return [{"kind": f"{direction.value}-connection", "service_name": name, "id": id}]
        case events.StreamBytes(id, into, out):
            lines = []
            if into:
                lines.append({"kind": "bytes-in", "id": id, "bytes": into})
            if out:
                lines.append({"kind": "bytes-out", "id": id, "bytes": out})
            return lines
        case events.StreamClosed(id, name, events.Direction.OUTGOING, _, _, reason, _):
            lines = []
            if reason is not None:
                lines.append({"kind": "outgoing-lost", "service_name": name, "id": id, "reason": reason})
            lines.append({"kind": "outgoing-done", "service_name": name, "id": id})
            return lines
        case events.StreamClosed(id, name, events.Direction.INCOMING, _, _, reason, _):
            if reason is not None:
                return [{"kind": "incoming-lost", "id": id, "reason": reason, "service_name": name}]
            return [{"kind": "incoming-done", "id": id, "service_name": name}]
        case events.PeerUnreachable(since, seconds):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            return [{"kind": "peer-unreachable", "since": when, "seconds": round(seconds)}]
        case events.Paired(agreed):
            return [{"kind": "paired", "name": agreed.name, "peer_name": agreed.peer_name}]
        case events.PairingDeclined(reason):
            return [{"kind": "pairing-declined", "reason": f"no pairing stored: {reason}"}]
        case events.Error(message):
            return [{"kind": "error", "message": message}]
        case events.Closed(result):
            return [{"kind": "closed", "result": result}]
    return []


def render_status(status: SessionStatus) -> dict:
    return {
        "kind": "status",
        "phase": status.phase.value,
        "mailbox": status.mailbox.value,
        "mailbox_url": status.mailbox_url,
        "code": status.code,
        "verifier": status.verifier,
        "peer": status.peer.value,
        "generation": status.generation,
        "path": status.path.value,
        "hint": status.hint,
        "reason": status.reason,
    }
