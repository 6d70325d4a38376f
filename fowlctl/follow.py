"""Following one session until it is connected, or until it ends.

Subscribe before starting the session, so that no signal can slip by; every
signal about the session triggers a fresh read of its properties, which are
the truth (signals only say when to look).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout

from fowlctl.bus import OBJECT_MANAGER, SESSION, Fowld
from fowlctl.errors import (
    BusUnreachable,
    FowldNotRunning,
    NobodyAnswered,
    SessionEnded,
    SessionNotFound,
    TimedOut,
)
from fowlctl.model import CONNECTED, ENDED_STATES, SessionView

# Once connected, how long to wait for the peer to answer about services and clients.
SETTLE_TIMEOUT = 5.0
# States of a session that has seen no peer on the mailbox yet.
NO_PEER_YET_STATES = frozenset({"starting", "waiting"})


class SessionFollower:
    def __init__(self, fowld: Fowld, reactor) -> None:
        self._fowld = fowld
        self._reactor = reactor
        self._last_state: dict[str, tuple[str, str]] = {}  # path -> (state, reason) from StateChanged
        self._removed: set[str] = set()
        self._fowld_gone = False
        self._bus_lost = False
        self._dirty = False  # something happened since the last read of the properties
        self._waiter: Deferred | None = None

    async def start(self) -> None:
        await self._fowld.subscribe(self._signal, self._owner_changed)
        self._fowld.on_bus_lost(self._lost)

    def _signal(self, message) -> None:
        if message.interface == SESSION and message.member == "StateChanged":
            state, reason = message.body[:2]
            self._last_state[message.path] = (str(state), str(reason))
        elif message.interface == OBJECT_MANAGER and message.member == "InterfacesRemoved":
            self._removed.add(str(message.body[0]))
        self._poke()

    def _owner_changed(self, new_owner: str) -> None:
        if not new_owner:
            self._fowld_gone = True
        self._poke()

    def _lost(self) -> None:
        self._bus_lost = True
        self._poke()

    def _poke(self) -> None:
        self._dirty = True
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            waiter.callback(None)

    def _ended(self, path: str, session_id: str) -> SessionEnded:
        state, reason = self._last_state.get(path, ("closed", ""))
        state = state if state in ENDED_STATES else "closed"
        return SessionEnded(f"session {session_id} {state}" + (f": {reason}" if reason else ""))

    async def until_connected(
        self, path: str, session_id: str, timeout: float | None = None, answer_timeout: float | None = None
    ) -> SessionView:
        """The session's properties once it is connected and its forwards have settled.

        Raises SessionEnded if it fails or closes first, TimedOut after ``timeout`` seconds,
        NobodyAnswered if no peer has shown up on the mailbox within ``answer_timeout``.
        """
        now = self._reactor.seconds
        deadline = None if timeout is None else now() + timeout
        answer_deadline = None if answer_timeout is None else now() + answer_timeout
        settle_deadline = None
        while True:
            if self._bus_lost:
                raise BusUnreachable("lost the connection to the session bus")
            if self._fowld_gone:
                raise FowldNotRunning("fowld stopped while waiting for the peer")
            if path in self._removed:
                raise self._ended(path, session_id)
            self._dirty = False
            try:
                view = await self._fowld.session(path, session_id)
            except SessionNotFound:
                raise self._ended(path, session_id) from None
            if view.state in ENDED_STATES:
                reason = f": {view.reason}" if view.reason else ""
                raise SessionEnded(f"session {session_id} {view.state}{reason}")
            if view.settled:
                return view
            if view.state not in NO_PEER_YET_STATES:
                answer_deadline = None  # a peer answered: from here on only --timeout applies
            elif answer_deadline is not None and now() >= answer_deadline:
                raise NobodyAnswered(
                    f"nobody answered the code within {answer_timeout:g} s (check the code with your"
                    " peer: their invite must still be waiting)"
                )
            if view.state == CONNECTED:
                settle_deadline = settle_deadline or now() + SETTLE_TIMEOUT
                if now() >= settle_deadline:
                    return view  # show what is there; the forwards' own states tell the rest
            else:
                settle_deadline = None
            if self._dirty:
                continue
            limits = [t for t in (deadline, settle_deadline, answer_deadline) if t is not None]
            self._waiter = Deferred()
            if limits:
                self._waiter.addTimeout(max(0.0, min(limits) - now()), self._reactor)
            try:
                await self._waiter
            except DeferredTimeout:
                self._waiter = None
                if deadline is not None and now() >= deadline:
                    raise TimedOut(f"no peer connected within {timeout:g} s") from None
