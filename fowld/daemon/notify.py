"""Tell the service manager how the daemon is doing (the sd_notify protocol).

systemd passes ``NOTIFY_SOCKET`` (and ``WATCHDOG_USEC`` when the unit sets
``WatchdogSec=``) to services it starts. Without them every method here is a
no-op, so the daemon behaves the same when run by hand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from sdnotify import SystemdNotifier
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between two watchdog pings, or None when no watchdog is expected of us.

    systemd kills the service after ``WATCHDOG_USEC`` without a ping, so we
    ping at half that interval.
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    # A WATCHDOG_PID naming another process means the variables were inherited, not meant for us.
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        timeout = int(usec)
    except ValueError:
        return None
    return timeout / 2 / 1_000_000 if timeout > 0 else None


class Notifier:
    """Sends readiness, status, reload and stop notifications, and feeds the watchdog.

    The environment is read once, here, as ``sdnotify`` does.
    """

    def __init__(self) -> None:
        self._notifier = SystemdNotifier()
        # Pings nobody can hear would only cost wake-ups.
        self._interval = watchdog_interval() if os.environ.get("NOTIFY_SOCKET") else None
        self._watchdog: LoopingCall | None = None

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        """Show ``text`` in ``systemctl status``; the protocol allows one line only."""
        self._send("STATUS=" + " ".join(text.splitlines()))

    def reloading(self) -> None:
        """Announce a reload; call ``ready()`` once the new configuration is in force."""
        # systemd >= 253 (Type=notify-reload) wants the time the reload began.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def start_watchdog(self, reactor: IReactorTime) -> None:
        """Ping the watchdog from the reactor loop, so a stuck reactor gets the daemon restarted."""
        if self._interval is None or self._watchdog is not None:
            return
        self._watchdog = LoopingCall(self._send, "WATCHDOG=1")
        self._watchdog.clock = reactor
        self._watchdog.start(self._interval, now=True)

    def stop(self) -> None:
        """Stop the watchdog pings."""
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def _send(self, message: str) -> None:
        # sdnotify drops the message silently when there is no socket.
        self._notifier.notify(message)


class NotifyService(Service):
    """Feeds the watchdog while running and says STOPPING=1 when stopped.

    Add it to the daemon's MultiService last: services stop in reverse order,
    so systemd hears about the shutdown first.
    """

    def __init__(self, notifier: Notifier, reactor: IReactorTime) -> None:
        self.notifier = notifier
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        self.notifier.start_watchdog(self._reactor)

    def stopService(self) -> None:
        self.notifier.stopping()
        self.notifier.stop()
        return super().stopService()
