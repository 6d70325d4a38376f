"""Opening a Dilated wormhole, the one way the engine gets one.

``open_dilated`` applies the contained fixes of ``patches`` first, so no
import has side effects, and passes magic-wormhole a timing recorder that
keeps nothing: the library's default keeps one event per mailbox message for
the life of the wormhole, and re-sends its history after every mailbox
reconnection, so a long-lived session that reconnects often would grow
without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.python.failure import Failure
from wormhole import create
from wormhole.errors import LonelyError, WrongPasswordError
from zope.interface import implementer

from fowld.wormhole import patches

try:  # the interface the library's own recorder implements; absent in odd builds
    from wormhole._interfaces import ITiming
except ImportError:  # pragma: no cover - only with a changed magic-wormhole
    ITiming = None


class _NoEvent:
    """An event nobody records: every method magic-wormhole calls on one does nothing."""

    def detail(self, **details: Any) -> None:
        pass

    def finish(self, when: float | None = None, **details: Any) -> None:
        pass

    def __enter__(self) -> _NoEvent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


_NO_EVENT = _NoEvent()


class QuietTiming:
    """A timing recorder that records nothing, so no message history builds up."""

    def add(self, name: str, when: float | None = None, **details: Any) -> _NoEvent:
        return _NO_EVENT

    def write(self, fn: str, stderr: Any) -> None:
        pass


if ITiming is not None:
    QuietTiming = implementer(ITiming)(QuietTiming)


@dataclass(frozen=True)
class DilationOptions:
    transit_relay: str | None
    relay_only: bool  # never offer or use direct connections (Dilation's no_listen)
    ping_interval: float  # Dilation's keep-alive


def open_dilated(
    reactor: Any,
    app_id: str,
    mailbox_url: str,
    versions: dict,
    options: DilationOptions,
    on_wormhole_status: Callable[[object], None],
    on_dilation_status: Callable[[object], None],
) -> tuple[Any, Any]:
    """A new wormhole and its ``DilatedWormhole``; statuses arrive through the callbacks."""
    patches.install()
    w = create(
        app_id,
        mailbox_url,
        reactor,
        versions=versions,
        dilation=True,
        timing=QuietTiming(),
        on_status_update=on_wormhole_status,
    )
    dilated = w.dilate(
        transit_relay_location=options.transit_relay,
        no_listen=options.relay_only,
        on_status_update=on_dilation_status,
        ping_interval=options.ping_interval,
    )
    return w, dilated


# How a wrong-password failure's reason begins: supervisors never retry after one.
WRONG_CODE = "wrong code:"


def failure_reason(failure: Failure) -> str:
    """Why a wormhole failed, in words for people."""
    if failure.check(WrongPasswordError):
        return f"{WRONG_CODE} the peer used a different code (or someone guessed wrong)"
    if failure.check(LonelyError):
        return "no peer ever connected"
    return failure.getErrorMessage() or failure.type.__name__


def close_result(outcome: object) -> str:
    """The result of ``wormhole.close()``: "happy", "lonely", or what went wrong."""
    if isinstance(outcome, Failure):
        if outcome.check(LonelyError):
            return "lonely"
        return outcome.getErrorMessage() or outcome.type.__name__
    return str(outcome)
