"""What the daemon does, independent of D-Bus: start sessions from profiles, reload, find, stop.

The ``Manager`` is a ``MultiService`` whose children are the running
``SupervisedSession`` services. Front ends (the D-Bus objects, sd_notify
status) follow it through ``ManagerListener`` callbacks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, TimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure

from fowld.daemon.errors import AlreadyExists, Failed, InvalidArgs, InvalidProfile, NoCode, NoPairing
from fowld.daemon.invites import InviteGate
from fowld.daemon.meeting import PairedSession
from fowld.daemon.options import SessionOptions
from fowld.daemon.pairings import PairingStore
from fowld.daemon.profiles import Profile, ProfileChanges, ProfileError, profile_from_dict
from fowld.daemon.registry import SessionRegistry
from fowld.daemon.store import ProfileStore
from fowld.daemon.supervisor import Mode, SupervisedSession
from fowld.engine import events, rules
from fowld.engine.pairing import PairingRequest

log = Logger()
CODE_TIMEOUT = 30.0  # seconds Invite waits for the mailbox to allocate a code
STOP_TIMEOUT = 8.0  # seconds all sessions together get to close when the daemon stops
INLINE_PROFILE_NAME = "adhoc"  # sessions of inline profiles are adhoc-1, adhoc-2, ...
INLINE_SOURCE = "inline profile"  # where its errors come from, in place of FILE:LINE
INLINE_OPTIONS = ("name",)


class ManagerListener(Protocol):
    def session_added(self, session: SupervisedSession) -> None: ...
    def session_changed(self, session: SupervisedSession) -> None: ...
    def session_removed(self, session: SupervisedSession) -> None: ...
    def profiles_changed(self) -> None: ...
    def pairings_changed(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class StartOptions:
    """What a person may add to an invite or accept (D-Bus options, fowlctl flags)."""

    pair: str | None = None  # store a pairing of this name once the peer is connected
    expires: float | None = None  # seconds: the pairing's expiry with pair, else the invitation's
    lifetime: float | None = None  # seconds until the session ends itself

    @classmethod
    def from_mapping(cls, options: dict) -> StartOptions:
        """Validated options; unknown keys and bad values are refused (``InvalidArgs``)."""
        unknown = set(options) - {"pair", "expires", "lifetime"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise InvalidArgs(f"unknown options: {names} (known: pair, expires, lifetime)")
        try:
            pair = options.get("pair") or None
            if pair is not None:
                rules.check_name(pair, "pairing name")
            expires, lifetime = (
                None if options.get(k) in (None, "", 0) else rules.parse_duration(options[k], k)
                for k in ("expires", "lifetime")
            )
        except rules.RuleError as e:
            raise InvalidArgs(str(e)) from None
        return cls(pair, expires, lifetime)


class Manager(MultiService):
    def __init__(
        self,
        store: ProfileStore,
        reactor: Any,
        options: SessionOptions | None = None,
        pairings: PairingStore | None = None,
        code_timeout: float = CODE_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ):
        super().__init__()
        self.store = store
        self.sessions = SessionRegistry()
        self.options = options or SessionOptions()
        self.pairings = pairings or PairingStore()
        self._reactor = reactor
        self._code_timeout = code_timeout
        self._stop_timeout = stop_timeout
        self._listeners: list[ManagerListener] = []
        self._invites = InviteGate(self.options.invites, reactor)

    def add_listener(self, listener: ManagerListener) -> None:
        self._listeners.append(listener)

    def _tell(self, what: str, *args: object) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, what)(*args)
            except Exception:
                log.failure("{listener!r}.{what} failed", listener=listener, what=what)

    # starting sessions -------------------------------------------------------------------------

    def _one_shot_options(self, start: StartOptions) -> SessionOptions:
        if start.pair is not None and self.pairings.exists(start.pair):
            raise AlreadyExists(
                f"a pairing named {start.pair!r} exists already (`fowlctl forget {start.pair}` first)"
            )
        request = None
        if start.pair is not None:
            expires_at = time.time() + start.expires if start.expires else None
            request = PairingRequest(start.pair, expires_at)
        return dataclasses.replace(
            self.options,
            pairing=request,
            lifetime=start.lifetime,
            join_within=start.expires if start.pair is None else None,
        )

    def invite(self, profile_name: str, start: StartOptions | None = None) -> Deferred:
        """Start a session from a loaded profile that allocates a code; fires with (session, code)."""
        return self.invite_profile(self.store.get(profile_name), start)

    def invite_profile(self, profile: Profile, start: StartOptions | None = None) -> Deferred:
        """Start a session that allocates a code; fires with (session, code)."""
        self._invites.check_room(self.sessions, profile.name)
        options = self._one_shot_options(start or StartOptions())
        session = self._launch(profile, Mode.INVITE, options=options)
        self._invites.expire(session)
        d = session.wait_for_code(self._code_timeout)

        def no_code(failure: Failure) -> None:
            state = session.status.mailbox.value
            session.close(timeout=0, reason="no code was allocated")
            if failure.check(TimeoutError):
                raise Failed(
                    f"the mailbox {profile.mailbox} allocated no code within {self._code_timeout:g} s"
                    f" (mailbox connection: {state})"
                )
            raise Failed(f"cannot allocate a code: {failure.getErrorMessage()}")

        return d.addCallbacks(lambda code: (session, code), no_code)

    def accept(self, profile_name: str, code: str, start: StartOptions | None = None) -> SupervisedSession:
        """Start a session from a loaded profile with a code the peer gave us."""
        return self.accept_profile(self.store.get(profile_name), code, start)

    def accept_profile(
        self, profile: Profile, code: str, start: StartOptions | None = None
    ) -> SupervisedSession:
        """Start a session with a code the peer gave us."""
        options = self._one_shot_options(start or StartOptions())
        if not code.strip():
            raise InvalidArgs("the code is empty")
        try:
            code = rules.check_code(code)  # the engine's own rule: what passes here, it takes
        except rules.RuleError as e:
            raise InvalidArgs(str(e)) from None
        return self._launch(profile, Mode.ACCEPT, code, options)

    def start(self, profile_name: str) -> SupervisedSession:
        """Start the profile's paired (or fixed-code) session, supervised by its restart policy."""
        profile = self.store.get(profile_name)
        if profile.code is None and profile.peer is None:
            raise NoCode(
                f"profile {profile.name!r} has neither a pairing (peer:) nor a fixed code: invite a peer"
                f" with it or accept their code instead (fowlctl invite {profile.name} / fowlctl accept"
                f" {profile.name} CODE)"
            )
        running = self.sessions.fixed_code_session(profile.name)
        if running is not None:
            raise AlreadyExists(
                f"profile {profile.name!r} already runs as session {running.id}"
                " (one code serves one session at a time)"
            )
        if profile.peer is not None:
            return self._launch_paired(profile)
        return self._launch(profile, Mode.FIXED)

    def inline_profile(self, data: Mapping[str, object], options: Mapping[str, object]) -> Profile:
        """A profile given as values rather than a file, validated exactly as files are.

        It takes the daemon's default mailbox and transit relay when it names none. A code
        has no place in it: invite allocates one, accept is given one.
        """
        unknown = sorted(set(options) - set(INLINE_OPTIONS))
        if unknown:
            raise InvalidArgs(f"unknown option {unknown[0]!r} (known: {', '.join(INLINE_OPTIONS)})")
        name = options.get("name", INLINE_PROFILE_NAME)
        for key in ("code", "autostart", "peer"):
            if key in data:
                raise InvalidProfile(f"an inline profile cannot set {key!r}: it is for one invite or accept")
        try:
            return profile_from_dict(data, name, INLINE_SOURCE, self.store.defaults)  # type: ignore[arg-type]
        except ProfileError as e:
            raise InvalidProfile(str(e)) from None

    def _launch_paired(self, profile: Profile) -> SupervisedSession:
        paired = self.pairings.get(profile.peer)
        if paired.expired(time.time()):
            raise NoPairing(f"pairing {paired.name!r} has expired: it can never meet again; pair anew")
        return self._launch(profile, Mode.PAIRED, paired=paired)

    def autostart(self, names: Iterable[str] | None = None) -> None:
        """Start the autostart profiles (among ``names``) that have no session yet."""
        wanted = None if names is None else set(names)
        for profile in self.store.profiles:
            if not profile.autostart or (wanted is not None and profile.name not in wanted):
                continue
            if self.sessions.fixed_code_session(profile.name) is not None:
                continue
            try:
                if profile.peer is not None:
                    self._launch_paired(profile)
                else:
                    self._launch(profile, Mode.FIXED)
            except NoPairing as e:
                log.error("cannot autostart profile {name}: {e}", name=profile.name, e=str(e))
            except Exception:
                log.failure("cannot autostart profile {name}", name=profile.name)

    def _launch(
        self,
        profile: Profile,
        mode: Mode,
        code: str | None = None,
        options: SessionOptions | None = None,
        paired: Any = None,
    ) -> SupervisedSession:
        if not self.running:
            raise Failed("fowld is stopping")
        session_id = self.sessions.new_id(profile.name)
        if paired is not None:
            session = PairedSession(session_id, profile, self._reactor, self.options, self.pairings, paired)
        else:
            session = SupervisedSession(
                session_id, profile, mode, self._reactor, options or self.options, code
            )
        self.sessions.add(session)
        session.subscribe(lambda event: self._session_event(session, event))
        self._tell("session_added", session)
        log.info("session {id} started ({mode})", id=session.id, mode=mode.value)
        session.setServiceParent(self)
        if paired is not None:
            self._tell("pairings_changed")  # now running
        return session

    def _session_event(self, session: SupervisedSession, event: events.Event) -> None:
        if isinstance(event, events.Paired):
            self._store_pairing(session, event.agreed)
        if isinstance(event, events.StatusChanged):
            self._tell("session_changed", session)
        elif isinstance(event, events.Closed):
            log.info(
                "session {id} ended: {reason}",
                id=session.id,
                reason=session.status.reason or event.result,
            )
            self.sessions.remove(session)
            if session.parent is self:
                session.disownServiceParent()
            self._tell("session_removed", session)
            if isinstance(session, PairedSession):
                self._tell("pairings_changed")  # no longer running (or forgotten by the peer)

    # pairings ----------------------------------------------------------------------------------

    def _store_pairing(self, session: SupervisedSession, agreed: Any) -> None:
        try:
            self.pairings.store_new(agreed, session.profile.mailbox)
        except OSError as e:
            session.set_note(f"no pairing stored: cannot write it: {e.strerror or e}")
        else:
            session.set_note(
                f"paired as {agreed.name!r} (the peer calls it {agreed.peer_name!r});"
                f" a profile with `peer: {agreed.name}` meets it again with no code"
            )
            log.info("session {id}: stored pairing {name}", id=session.id, name=agreed.name)
        self._tell("pairings_changed")

    def pairing_summaries(self) -> tuple[list[dict[str, object]], list[tuple[str, str]]]:
        """Every pairing without its secret (and whether it runs), and the files skipped."""
        found, errors = self.pairings.load()
        running = {s.pairing.name for s in self.sessions if isinstance(s, PairedSession)}
        return [p.summary(p.name in running) for p in found], errors

    def forget(self, name: str) -> Deferred:
        """Forget a pairing; its running session ends, and a connected peer forgets it too."""
        session = next(
            (s for s in self.sessions if isinstance(s, PairedSession) and s.pairing.name == name), None
        )
        if session is not None:
            d = session.forget()
        elif self.pairings.forget(name):
            d = Deferred()
            d.callback(None)
        else:
            raise NoPairing(f"no pairing named {name!r}")
        return d.addBoth(lambda _: self._tell("pairings_changed"))

    # profiles ----------------------------------------------------------------------------------

    def load_profiles(self) -> ProfileChanges:
        changes = self.store.load()
        self._tell("profiles_changed")
        return changes

    def reload(self) -> ProfileChanges:
        """Read the profiles again. Running sessions are left as they are, whatever changed.

        New and changed autostart profiles without a session start.
        """
        changes = self.load_profiles()
        self.autostart(changes.added + changes.changed)
        return changes

    # stopping ----------------------------------------------------------------------------------

    def stopService(self) -> Deferred:
        """Close every session gracefully, but give up waiting after ``stop_timeout``."""
        d = super().stopService()
        d.addTimeout(self._stop_timeout, self._reactor)
        d.addErrback(lambda f: log.warn("sessions did not all close in time: {f}", f=f.getErrorMessage()))
        return d
