"""No per-message history for the life of a session.

magic-wormhole's default timing recorder keeps one ``wormhole.timing.Event``
per mailbox message and the mailbox connection re-sends its history after
every reconnection; fowld passes a recorder that keeps nothing. Two real
sessions in-process, on the test mailbox; one side's mailbox connection is
dropped again and again, and the Events alive in the process are counted. The
library's own recorder runs the same steps as a control, so the count is known
to see the growth it guards against.
"""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
from twisted.internet import task
from wormhole.timing import DebugTiming, Event

from fowld.engine import events
from fowld.engine.session import Session, SessionConfig
from fowld.engine.status import Phase
from fowld.wormhole import access, dilation
from fowld.wormhole.status import MailboxState

pytestmark = pytest.mark.timeout(90)
RECONNECTIONS = 6


def _reactor():
    from twisted.internet import reactor

    return reactor


async def _until(condition, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await task.deferLater(_reactor(), 0.05, lambda: None)
    raise AssertionError(f"not within {timeout}s")


def _events_alive() -> int:
    gc.collect()
    return sum(isinstance(o, Event) for o in gc.get_objects())


async def _reconnect_mailbox_repeatedly(mailbox_url: str, relay: str) -> tuple[int, int]:
    """Events alive after the pair connected, and after ``RECONNECTIONS`` mailbox reconnections."""
    config = SessionConfig(mailbox_url=mailbox_url, transit_relay=relay)
    first, second = Session(config, _reactor()), Session(config, _reactor())
    codes: list[str] = []
    first.subscribe(lambda e: codes.append(e.code) if isinstance(e, events.CodeAllocated) else None)
    try:
        for session in (first, second):
            session.startService()
        first.allocate_code()
        await _until(lambda: codes)
        second.set_code(codes[0])
        await _until(lambda: first.status.phase is second.status.phase is Phase.CONNECTED)
        before = _events_alive()
        for _ in range(RECONNECTIONS):
            protocol = access.mailbox_protocol(first._wormhole)
            protocol.transport.abortConnection()
            await _until(lambda p=protocol: access.mailbox_protocol(first._wormhole) not in (None, p))
            await _until(lambda: first.status.mailbox is MailboxState.CONNECTED)
        return before, _events_alive()
    finally:
        for session in (first, second):
            await session.close(timeout=2).addTimeout(15, _reactor())


@pytest_twisted.ensureDeferred
async def test_mailbox_reconnections_keep_no_history(mailbox, transit_relay):
    before, after = await _reconnect_mailbox_repeatedly(mailbox.url, transit_relay.hint)
    assert after <= before, f"{after - before} timing events kept after {RECONNECTIONS} reconnections"


@pytest_twisted.ensureDeferred
async def test_the_library_recorder_would_keep_it(mailbox, transit_relay, monkeypatch):
    monkeypatch.setattr(dilation, "QuietTiming", DebugTiming)
    before, after = await _reconnect_mailbox_repeatedly(mailbox.url, transit_relay.hint)
    assert after > before + RECONNECTIONS, (before, after)
