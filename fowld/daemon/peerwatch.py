"""Noticing a peer that is gone for good, so a supervised session can restart to meet it again.

A restarted peer waits in a fresh mailbox, so Dilation's own reconnection
never finds it. Two signs say the peer is gone, each lasting ``timeout``:

- the session stays "reconnecting": we lead Dilation's reconnection and no one answers;
- the session still says "connected" but pings go unanswered: as Dilation's
  follower, magic-wormhole waits silently for the leader to reconnect and
  reports no change at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from fowld.status import Phase


class PeerWatch:
    def __init__(
        self,
        reactor: Any,
        timeout: float,
        ping: Callable[[float], Deferred],
        on_lost: Callable[[str], None],
    ):
        self._reactor = reactor
        self._timeout = timeout
        self._ping = ping  # round trip with a timeout, as Session.ping
        self._on_lost = on_lost
        self._phase: Phase | None = None
        self._reconnecting: IDelayedCall | None = None
        self._next_probe: IDelayedCall | None = None
        self._probe: Deferred | None = None
        self._stopped = False

    def update(self, phase: Phase) -> None:
        """Follow the session's phase."""
        if self._stopped or phase is self._phase:
            return
        self._phase = phase
        self._cancel_timers()
        self._probe = None  # an answer to an earlier probe no longer counts
        if phase is Phase.RECONNECTING:
            self._reconnecting = self._reactor.callLater(
                self._timeout, self._lost, f"peer unreachable for {self._timeout:g} s"
            )
        elif phase is Phase.CONNECTED:
            self._schedule_probe()

    def stop(self) -> None:
        self._stopped = True
        self._cancel_timers()
        self._probe = None

    def _cancel_timers(self) -> None:
        for call in (self._reconnecting, self._next_probe):
            if call is not None and call.active():
                call.cancel()
        self._reconnecting = self._next_probe = None

    def _schedule_probe(self) -> None:
        self._next_probe = self._reactor.callLater(self._timeout / 2, self._send_probe)

    def _send_probe(self) -> None:
        self._next_probe = None
        probe = self._ping(self._timeout)
        self._probe = probe
        probe.addBoth(self._answered, probe)

    def _answered(self, result: object, probe: Deferred) -> None:
        if probe is not self._probe or self._stopped:
            return  # the phase changed meanwhile, or we were stopped
        self._probe = None
        if isinstance(result, Failure) and result.check(TimeoutError):
            self._lost(f"peer did not answer a ping for {self._timeout:g} s")
        else:
            self._schedule_probe()

    def _lost(self, reason: str) -> None:
        self._reconnecting = None
        self.stop()
        self._on_lost(reason)
