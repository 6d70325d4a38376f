"""Bounded waiting for tests, bench and demo: every poll stops after a count and a time.

``until`` polls in the calling thread; ``eventually`` does the same from a
coroutine on the Twisted reactor, so the reactor keeps running between polls.
Both raise ``WaitTimeout`` with what was awaited (``what``: text, or a function
that tells it at the time of failure) and the last value seen.
"""

from __future__ import annotations

import math
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
TIMEOUT = 10.0  # seconds: one step (a server, a peer, a listener) on a loaded loopback


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold in time: a test failure, and a timeout to code that catches those."""


class _Poll(Generic[T]):
    """One wait: ``pauses()`` yields how long to sleep before each next check."""

    def __init__(
        self,
        check: Callable[[], T],
        what: str | Callable[[], str],
        timeout: float,
        interval: float,
        process: subprocess.Popen | None,
    ):
        self.check, self.what, self.timeout, self.interval = check, what, timeout, interval
        self.process = process
        self.value: Any = None

    def describe(self) -> str:
        return self.what() if callable(self.what) else self.what

    def pauses(self) -> Iterator[float]:
        deadline = time.monotonic() + self.timeout
        # the count bound: a clock that jumps cannot make a wait loop forever
        for _ in range(max(2, math.ceil(self.timeout / self.interval) + 2)):
            if self.process is not None and self.process.poll() is not None:
                raise WaitTimeout(
                    f"{self.describe()}: process {self.process.pid} exited ({self.process.returncode})"
                )
            self.value = self.check()
            if self.value:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            yield min(self.interval, left)
        raise WaitTimeout(f"{self.describe()}: not within {self.timeout:g} s (last: {self.value!r})")


def until(
    check: Callable[[], T],
    what: str | Callable[[], str],
    timeout: float = TIMEOUT,
    interval: float = 0.05,
    process: subprocess.Popen | None = None,
) -> T:
    """The first true value ``check()`` returns, polled every ``interval`` seconds.

    Raises WaitTimeout after ``timeout`` seconds, or at once if ``process`` exits.
    """
    poll = _Poll(check, what, timeout, interval, process)
    for pause in poll.pauses():
        time.sleep(pause)
    return poll.value


def datagrams(
    sock: socket.socket, enough: Callable[[list[str]], bool], timeout: float, fail: bool = True
) -> list[str]:
    """Datagrams from ``sock`` (decoded) until ``enough(received)`` holds.

    After ``timeout`` seconds in all: WaitTimeout, or with ``fail`` False what came so far.
    """
    received: list[str] = []
    deadline = time.monotonic() + timeout
    for _ in range(10_000):  # the count bound: a sender that never stops cannot keep us here
        left = deadline - time.monotonic()
        if enough(received) or left <= 0:
            break
        sock.settimeout(left)
        try:
            received.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    if fail and not enough(received):
        raise WaitTimeout(f"datagrams: not enough within {timeout:g} s (received {received})")
    return received


def get_reactor() -> Any:
    """The global Twisted reactor, imported late so that pytest-twisted installs it first."""
    from twisted.internet import reactor as installed

    return installed


async def sleep(seconds: float) -> None:
    """Let the reactor run for ``seconds``."""
    from twisted.internet.task import deferLater

    await deferLater(get_reactor(), seconds, lambda: None)


async def eventually(
    check: Callable[[], T],
    what: str | Callable[[], str],
    timeout: float = TIMEOUT,
    interval: float = 0.02,
    process: subprocess.Popen | None = None,
) -> T:
    """``until`` for coroutines: the reactor runs between the polls."""
    poll = _Poll(check, what, timeout, interval, process)
    for pause in poll.pauses():
        await sleep(pause)
    return poll.value
