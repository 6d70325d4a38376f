"""``fowlctl watch``: fowld's signals as one line per event, for people or as JSON.

The JSON keys are part of fowlctl's interface for scripts: ``time`` (ISO 8601,
UTC), ``event``, ``session`` (the id, "" for events about fowld itself), then
the event's own keys.
"""

from __future__ import annotations

import datetime
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from fowlctl.bus import OBJECT_MANAGER, SESSION
from fowlctl.ids import SESSION_PATH_PREFIX, id_from_path
from fowlctl.model import SessionView
from fowlctl.render import format_bytes


@dataclass(frozen=True)
class WatchEvent:
    time: float  # seconds since the epoch
    event: str
    session: str = ""
    details: dict = field(default_factory=dict)


def event_from_signal(
    interface: str, member: str, path: str, body: Sequence, names: MutableMapping[str, str], now: float
) -> WatchEvent | None:
    """The event a signal from fowld stands for, or None for signals not shown.

    ``names`` maps session object paths to ids; it learns new sessions as they appear.
    """
    if interface == OBJECT_MANAGER and member in ("InterfacesAdded", "InterfacesRemoved"):
        object_path = str(body[0])
        if not object_path.startswith(SESSION_PATH_PREFIX):
            return None
        if member == "InterfacesAdded":
            props = body[1].get(SESSION)
            if props is None:
                return None
            names[object_path] = str(props.get("Id", "")) or id_from_path(object_path)
            profile = str(props.get("Profile", ""))
            return WatchEvent(now, "session-added", names[object_path], {"profile": profile})
        if SESSION not in body[1]:
            return None
        return WatchEvent(now, "session-removed", names.pop(object_path, id_from_path(object_path)))
    if interface != SESSION:
        return None
    session = names.get(path) or id_from_path(path)
    if member == "StateChanged":
        state, reason = body[:2]
        return WatchEvent(now, "state-changed", session, {"state": str(state), "reason": str(reason)})
    if member == "ConnectionOpened":
        conn_id, service, direction = body[:3]
        details = {"connection": int(conn_id), "service": str(service), "direction": str(direction)}
        return WatchEvent(now, "connection-opened", session, details)
    if member == "ConnectionClosed":
        conn_id, service, direction, bytes_in, bytes_out, reason = body[:6]
        details = {
            "connection": int(conn_id),
            "service": str(service),
            "direction": str(direction),
            "bytes_in": int(bytes_in),
            "bytes_out": int(bytes_out),
            "reason": str(reason),
        }
        return WatchEvent(now, "connection-closed", session, details)
    return None


def present_event(session: SessionView, now: float) -> WatchEvent:
    """A session that was already there when watching began (the snapshot before the events)."""
    details = {
        "profile": session.profile,
        "state": session.state,
        "reason": session.reason,
        "open_connections": session.open_connections,
        "bytes_in": session.bytes_in,
        "bytes_out": session.bytes_out,
    }
    return WatchEvent(now, "session-present", session.id, details)


def owner_event(new_owner: str, now: float) -> WatchEvent:
    """fowld appeared on the bus (a new owner of its name) or left it (no owner)."""
    return WatchEvent(now, "fowld-started" if new_owner else "fowld-stopped")


def event_json(e: WatchEvent) -> dict:
    stamp = datetime.datetime.fromtimestamp(e.time, datetime.UTC).isoformat(timespec="milliseconds")
    return {"time": stamp.replace("+00:00", "Z"), "event": e.event, "session": e.session, **e.details}


def event_line(e: WatchEvent) -> str:
    """``HH:MM:SS.mmm  SESSION  what happened`` in local time."""
    stamp = datetime.datetime.fromtimestamp(e.time).strftime("%H:%M:%S.%f")[:-3]
    d = e.details
    if e.event == "session-present":
        moved = f"{format_bytes(d['bytes_in'])} in, {format_bytes(d['bytes_out'])} out"
        state = d["state"] + (f" ({d['reason']})" if d["reason"] else "")
        text = f"present (profile {d['profile']}): {state}, {d['open_connections']} open, {moved}"
    elif e.event == "session-added":
        text = f"added (profile {d['profile']})"
    elif e.event == "session-removed":
        text = "removed"
    elif e.event == "state-changed":
        text = f"state {d['state']}" + (f" ({d['reason']})" if d["reason"] else "")
    elif e.event == "connection-opened":
        text = f"connection {d['connection']} opened: {d['service']} ({d['direction']})"
    elif e.event == "connection-closed":
        moved = f"{format_bytes(d['bytes_in'])} in, {format_bytes(d['bytes_out'])} out"
        how = f"failed: {d['reason']}" if d["reason"] else "closed"
        text = f"connection {d['connection']} {how}: {d['service']} ({d['direction']}), {moved}"
    elif e.event == "fowld-started":
        text = "fowld started"
    else:
        text = "fowld stopped"
    return f"{stamp}  {e.session or '-'}  {text}"
