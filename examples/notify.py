"""Desktop notifications for fowld's sessions, from its D-Bus signals alone.

Run it in your desktop session (``python3 examples/notify.py``): it shows a
notification when a session has a code to give to the peer, when the peer has
connected (with the verifier to compare), and when a session fails (with why).
It never polls: it reads the sessions once, then follows ``InterfacesAdded``,
``PropertiesChanged`` and ``StateChanged`` signals. Nothing here is private to
fowld: any D-Bus client can do the same (see docs/dbus-api.md).
"""

from __future__ import annotations

import sys

from twisted.internet import defer, task
from txdbus import client

FOWLD = "org.fowl.Fowld1"
MANAGER_PATH = "/org/fowl/Fowld1"
SESSION = "org.fowl.Fowld1.Session"
NOTIFICATIONS = "org.freedesktop.Notifications"
APP_NAME = "fowld"
CONNECTED, FAILED = "connected", "failed"


def grouped(verifier: str) -> str:
    return " ".join(verifier[i : i + 4] for i in range(0, len(verifier), 4))


def messages(old: dict, new: dict) -> list[tuple[str, str]]:
    """The (summary, body) notifications a session's change from ``old`` to ``new`` deserves."""
    session = new.get("Id", "a session")
    found = []
    if new.get("Code") and new.get("Code") != old.get("Code"):
        found.append((f"{session}: waiting for the peer", f"The code is {new['Code']}"))

    def connected(props: dict) -> bool:  # the verifier may come before or after the state
        return props.get("State") == CONNECTED and bool(props.get("Verifier"))

    if connected(new) and not connected(old):
        body = f"Verifier {grouped(new['Verifier'])}: compare it with your peer's."
        found.append((f"{session}: peer connected", body))
    if new.get("State") == FAILED and old.get("State") != FAILED:
        found.append((f"{session} failed", new.get("StateReason") or "no reason given"))
    return found


class Notifier:
    def __init__(self, bus: client.DBusClientConnection) -> None:
        self.bus = bus
        self.sessions: dict[str, dict] = {}  # object path -> properties as last announced

    def changed(self, path: str, changes: dict) -> None:
        old = self.sessions.get(path, {})
        new = {**old, **changes}
        self.sessions[path] = new
        for summary, body in messages(old, new):
            self.bus.callRemote(
                "/org/freedesktop/Notifications",
                "Notify",
                interface=NOTIFICATIONS,
                destination=NOTIFICATIONS,
                signature="susssasa{sv}i",
                body=[APP_NAME, 0, "network-transmit-receive", summary, body, [], {}, -1],
            ).addErrback(lambda f: print(f"notify.py: cannot notify: {f.getErrorMessage()}", file=sys.stderr))

    def signal(self, message) -> None:
        member, body = message.member, message.body or []
        if member == "InterfacesAdded" and SESSION in body[1]:
            self.changed(body[0], body[1][SESSION])
        elif member == "InterfacesRemoved":
            self.sessions.pop(body[0], None)
        elif member == "PropertiesChanged" and body[0] == SESSION:
            self.changed(message.path, body[1])
        elif member == "StateChanged":
            state, reason = body[:2]
            self.changed(message.path, {"State": state, "StateReason": reason})


async def main(reactor) -> None:
    bus = await client.connect(reactor, "session")
    notifier = Notifier(bus)
    await bus.addMatch(notifier.signal, sender=FOWLD, path_namespace=MANAGER_PATH)
    objects = await bus.callRemote(
        MANAGER_PATH,
        "GetManagedObjects",
        interface="org.freedesktop.DBus.ObjectManager",
        destination=FOWLD,
    )
    for path, interfaces in objects.items():
        if SESSION in interfaces:
            notifier.sessions[path] = dict(interfaces[SESSION])  # already there: nothing new to say
    print("notify.py: following fowld's sessions", file=sys.stderr, flush=True)
    await defer.Deferred()  # until interrupted


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
