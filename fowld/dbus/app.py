"""The daemon's service tree and process life: start, reload on SIGHUP, stop on SIGTERM.

``Daemon`` is a ``MultiService`` of the bus connection, the session manager
and the sd_notify service. It stops them one after the other, newest first:
systemd hears STOPPING=1, sessions close (their objects leave the bus), and
only then does the bus connection go.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from fowld.daemon import journal
from fowld.daemon.manager import Manager
from fowld.daemon.notify import Notifier, NotifyService
from fowld.daemon.options import SessionOptions
from fowld.daemon.profiles import BUILT_IN_DEFAULTS, ProfileChanges, ProfileDefaults
from fowld.daemon.store import ProfileStore
from fowld.daemon.supervisor import SupervisedSession
from fowld.dbus.bus import BusError, BusService
from fowld.dbus.manager_object import ManagerObject
from fowld.engine.status import Phase

log = Logger()


def counted(number: int, noun: str) -> str:
    """``1 session``, ``2 sessions``: the noun agrees with the number."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summary(manager: Manager) -> str:
    """The one-line STATUS shown by ``systemctl status``."""
    sessions = list(manager.sessions)
    connected = sum(1 for s in sessions if s.status.phase is Phase.CONNECTED)
    store = manager.store
    profiles = counted(len(store.profiles), "profile")
    text = f"{counted(len(sessions), 'session')}, {connected} connected; {profiles}"
    if store.errors:
        text += f" ({len(store.errors)} invalid)"
    return text


class StatusReporter:
    """Sends STATUS= whenever the summary changes (a ``ManagerListener``)."""

    def __init__(self, manager: Manager, notifier: Notifier):
        self._manager = manager
        self._notifier = notifier
        self._last = ""

    def report(self) -> None:
        text = summary(self._manager)
        if text != self._last:
            self._last = text
            self._notifier.status(text)

    def session_added(self, session: SupervisedSession) -> None:
        self.report()

    def session_changed(self, session: SupervisedSession) -> None:
        self.report()

    def session_removed(self, session: SupervisedSession) -> None:
        self.report()

    def profiles_changed(self) -> None:
        self.report()

    def pairings_changed(self) -> None:
        self.report()


class Daemon(MultiService):
    def __init__(
        self,
        profiles: Path,
        options: SessionOptions,
        reactor: Any,
        defaults: ProfileDefaults = BUILT_IN_DEFAULTS,
    ):
        super().__init__()
        self.exit_code = 0
        self._reactor = reactor
        self.notifier = Notifier()
        self.manager = Manager(ProfileStore(profiles, defaults), reactor, options)
        self.manager_object = ManagerObject(self.manager, reactor, self.reload)
        self.bus = BusService(reactor, self.manager_object, on_lost=self.fail)
        self.status = StatusReporter(self.manager, self.notifier)
        self.manager.add_listener(self.status)
        self.bus.setServiceParent(self)
        self.manager.setServiceParent(self)
        NotifyService(self.notifier, reactor).setServiceParent(self)

    def startService(self) -> None:
        self.manager.load_profiles()
        super().startService()
        self.bus.ready.addCallbacks(self._ready, self._not_ready)

    def _ready(self, _: object) -> None:
        self.manager.autostart()
        log.info("fowld is ready on the session bus")
        self.notifier.ready()
        self.status.report()

    def _not_ready(self, failure: Failure) -> None:
        if failure.check(BusError):
            self.fail(failure.getErrorMessage())
        else:
            log.failure("cannot start", failure)
            self.fail(f"cannot start: {failure.getErrorMessage()}")

    def fail(self, message: str) -> None:
        """Stop with a non-zero exit status, saying why on stderr."""
        journal.tell_error(message)
        self.exit_code = 1
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping

    def reload(self) -> ProfileChanges:
        """Read the profiles again (SIGHUP and the Reload method)."""
        self.notifier.reloading()
        try:
            changes = self.manager.reload()
            log.info(
                "reloaded profiles: added {added}, changed {changed}, removed {removed}",
                added=list(changes.added),
                changed=list(changes.changed),
                removed=list(changes.removed),
            )
            return changes
        finally:
            self.notifier.ready()
            self.status.report()

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                log.failure("stopping {service!r} failed", service=service)


def run(profiles: Path, options: SessionOptions, defaults: ProfileDefaults = BUILT_IN_DEFAULTS) -> int:
    """Run the daemon until SIGTERM or SIGINT; returns the exit status."""
    from twisted.internet import reactor

    daemon = Daemon(profiles, options, reactor, defaults)

    def reload_on_hangup(signum: int, frame: object) -> None:
        reactor.callFromThread(_reload_safely, daemon)

    signal.signal(signal.SIGHUP, reload_on_hangup)
    reactor.callWhenRunning(daemon.startService)
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stopService)
    reactor.run()
    return daemon.exit_code


def _reload_safely(daemon: Daemon) -> None:
    try:
        daemon.reload()
    except Exception:
        log.failure("reload failed")
