"""What each fowlctl command does, given parsed arguments and a connection to fowld."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater

from fowlctl.bus import SLOW_CALL_TIMEOUT, Fowld
from fowlctl.check import check_files, result_json, summary_line
from fowlctl.errors import BusUnreachable, CtlError, ExitCode, TimedOut
from fowlctl.follow import SessionFollower
from fowlctl.ids import id_from_path
from fowlctl.model import SessionView, profile_errors_json, profile_json, session_json
from fowlctl.output import Output
from fowlctl.pairings import start_options
from fowlctl.render import (
    format_verifier,
    forwards_lines,
    profiles_text,
    qr_code,
    session_details,
    sessions_table,
)
from fowlctl.top import ENTER, HOME_AND_CLEAR, LEAVE, reading, top_screen
from fowlctl.watch import event_from_signal, event_json, event_line, owner_event, present_event


@dataclass
class Context:
    args: argparse.Namespace
    out: Output
    reactor: object

    async def connect(self) -> Fowld:
        return await Fowld.connect(self.reactor, getattr(self.args, "bus", None))


# --- Starting sessions: invite, accept, start ------------------------------------------------


async def invite(ctx: Context) -> int:
    inline = ctx.args.inline

    async def begin(fowld: Fowld) -> str:
        options = start_options(ctx.args)
        if inline is not None:
            call = ("InviteInline", "a{sv}a{sv}", [inline.profile(), options or {}])
        elif options is None:
            call = ("Invite", "s", [ctx.args.profile])
        else:
            call = ("InviteWith", "sa{sv}", [ctx.args.profile, options])
        path, code = await fowld.call_manager(*call, timeout=SLOW_CALL_TIMEOUT)
        session_id = id_from_path(path)
        join = f"fowlctl accept PROFILE {code}" if inline is None else inline.join_command(code)
        text = (
            f"Session {session_id} is waiting for your peer. Give them this code:\n\n"
            f"    {code}\n\n"
            f"They join with:  {join}"
        )
        if ctx.out.is_terminal() and not ctx.args.no_qr:
            text += "\n\nOr they scan the code:\n" + qr_code(code)
        ctx.out.result(text, {"event": "code", "session": session_id, "object_path": path, "code": code})
        return path

    return await _start_and_wait(ctx, begin)


async def accept(ctx: Context) -> int:
    async def begin(fowld: Fowld) -> str:
        args = ctx.args
        options = start_options(args)
        if args.inline is not None:
            call = ("AcceptInline", "a{sv}sa{sv}", [args.inline.profile(), args.code, options or {}])
        elif options is None:
            call = ("Accept", "ss", [args.profile, args.code])
        else:
            call = ("AcceptWith", "ssa{sv}", [args.profile, args.code, options])
        path = await fowld.call_manager(*call, timeout=SLOW_CALL_TIMEOUT)
        session_id = id_from_path(path)
        # The code is a secret: shown only where invite hands it out.
        text = f"Session {session_id} is joining with the code you were given."
        ctx.out.result(text, {"event": "joining", "session": session_id, "object_path": path})
        return path

    return await _start_and_wait(ctx, begin)


async def start(ctx: Context) -> int:
    async def begin(fowld: Fowld) -> str:
        path = await fowld.call_manager("Start", "s", [ctx.args.profile], timeout=SLOW_CALL_TIMEOUT)
        session_id = id_from_path(path)
        text = f"Session {session_id} started from profile {ctx.args.profile}."
        ctx.out.result(text, {"event": "started", "session": session_id, "object_path": path})
        return path

    return await _start_and_wait(ctx, begin)


async def _start_and_wait(ctx: Context, begin) -> int:
    """Start a session with ``begin`` and, unless --no-wait, follow it until it connects."""
    fowld = await ctx.connect()
    try:
        follower = SessionFollower(fowld, ctx.reactor)
        await follower.start()  # before the session exists: no signal about it is missed
        path = await begin(fowld)
        if ctx.args.no_wait:
            return ExitCode.OK
        session_id = id_from_path(path)
        ctx.out.tell("Waiting for the peer to connect (Ctrl-C stops waiting; the session keeps running)...")
        try:
            answer_timeout = getattr(ctx.args, "answer_timeout", None)
            view = await follower.until_connected(path, session_id, ctx.args.timeout, answer_timeout)
        except TimedOut as e:
            await _close_quietly(fowld, path, session_id)
            raise type(e)(f"{e.message}; closed session {session_id}") from None
        except CancelledError:
            ctx.out.tell(
                f"Stopped waiting. Session {session_id} keeps running in fowld;"
                f" `fowlctl close {session_id}` ends it."
            )
            return ExitCode.INTERRUPTED
        ctx.out.result(_connected_text(view), {"event": "connected", "session": session_json(view)})
        return ExitCode.OK
    finally:
        fowld.disconnect()


async def _close_quietly(fowld: Fowld, path: str, session_id: str) -> None:
    try:
        await fowld.call_session(path, session_id, "Close")
    except CtlError:
        pass  # it may have ended on its own meanwhile; either way it is gone


def _connected_text(view: SessionView) -> str:
    how = view.path if view.path != "unknown" else "a connection"
    hint = f" ({view.hint})" if view.hint else ""
    lines = [
        f"Connected to the peer via {how}{hint}.",
        f"Verifier: {format_verifier(view.verifier)}",
        "  (the same on both sides means nobody is in the middle)",
    ]
    if view.reason:  # e.g. whether a pairing was stored, and why not
        lines.append(view.reason[0].upper() + view.reason[1:] + ".")
    forwards = forwards_lines(view)
    if forwards:
        lines.append("Forwarding:")
        lines.extend(f"  {line}" for line in forwards)
    return "\n".join(lines)


# --- Looking at sessions ----------------------------------------------------------------------


async def list_sessions(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        sessions = await fowld.sessions()
    finally:
        fowld.disconnect()
    ordered = sorted(sessions, key=lambda s: (s.created_usec, s.id))
    ctx.out.result(sessions_table(ordered), {"sessions": [session_json(s) for s in ordered]})
    return ExitCode.OK


async def status(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        if ctx.args.session is not None:
            view = await fowld.find_session(ctx.args.session)
            ctx.out.result(session_details(view, time.time()), session_json(view))
            return ExitCode.OK
        sessions = sorted(await fowld.sessions(), key=lambda s: (s.created_usec, s.id))
    finally:
        fowld.disconnect()
    now = time.time()
    text = "\n\n".join(session_details(s, now) for s in sessions) or sessions_table([])
    ctx.out.result(text, {"sessions": [session_json(s) for s in sessions]})
    return ExitCode.OK


async def close(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        view = await fowld.find_session(ctx.args.session)
        await fowld.call_session(view.object_path, view.id, "Close")
    finally:
        fowld.disconnect()
    ctx.out.result(f"Closed session {view.id}.", {"session": view.id, "closed": True})
    return ExitCode.OK


async def ping(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        view = await fowld.find_session(ctx.args.session)
        seconds = float(await fowld.call_session(view.object_path, view.id, "Ping"))
    finally:
        fowld.disconnect()
    text = f"{view.id}: the peer answered in {seconds * 1000:.1f} ms"
    ctx.out.result(text, {"session": view.id, "seconds": seconds})
    return ExitCode.OK


# --- Profiles ---------------------------------------------------------------------------------


async def profiles(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        found, errors = await fowld.profiles()
    finally:
        fowld.disconnect()
    data = {"profiles": [profile_json(p) for p in found], "errors": profile_errors_json(errors)}
    ctx.out.result(profiles_text(found, errors), data)
    return ExitCode.OK


async def reload(ctx: Context) -> int:
    fowld = await ctx.connect()
    try:
        added, changed, removed = await fowld.call_manager("Reload")
        _, errors = await fowld.profiles()
    finally:
        fowld.disconnect()

    def names(items: list) -> str:
        return ", ".join(items) if items else "none"

    lines = [f"Reloaded profiles: added {names(added)}; changed {names(changed)}; removed {names(removed)}."]
    if changed or removed:
        lines.append(
            "Running sessions of changed or removed profiles keep their old settings until they end."
        )
    if errors:
        lines.append("Profiles with errors (not loaded):")
        lines.extend(f"  {message}" for _, message in errors)
    data = {
        "added": list(added),
        "changed": list(changed),
        "removed": list(removed),
        "errors": profile_errors_json(errors),
    }
    ctx.out.result("\n".join(lines), data)
    return ExitCode.OK


# --- Watching ---------------------------------------------------------------------------------


async def watch(ctx: Context) -> int:
    fowld = await ctx.connect()
    lost: Deferred = Deferred()  # fails if the bus goes away
    try:
        held: list | None = []  # events that arrive before the snapshot is out wait for it

        def show(e) -> None:
            if held is not None:
                held.append(e)
            else:
                ctx.out.result(event_line(e), event_json(e))

        names: dict[str, str] = {}

        def on_signal(message) -> None:
            e = event_from_signal(
                message.interface, message.member, message.path, message.body or (), names, time.time()
            )
            if e is not None:
                show(e)

        def on_owner(new_owner: str) -> None:
            show(owner_event(new_owner, time.time()))

        def on_lost() -> None:
            if not lost.called:
                lost.errback(BusUnreachable("lost the connection to the session bus"))

        await fowld.subscribe(on_signal, on_owner)
        fowld.on_bus_lost(on_lost)
        snapshot = sorted(await fowld.sessions(), key=lambda s: (s.created_usec, s.id))
        pending, held = held, None
        for s in snapshot:  # first what is there, then what happens
            names.setdefault(s.object_path, s.id)
            show(present_event(s, time.time()))
        for e in pending:
            show(e)
        ctx.out.tell("Watching fowld's sessions; Ctrl-C stops.")
        try:
            await lost
        except CancelledError:
            return ExitCode.OK
    finally:
        if not lost.called:
            lost.callback(None)  # our own disconnect is no loss
        fowld.disconnect()
    return ExitCode.OK


async def top(ctx: Context) -> int:
    """Redraw the live view every interval until Ctrl-C."""
    fowld = await ctx.connect()
    write = ctx.out.draw
    write(ENTER)
    try:
        before: dict = {}
        then = ctx.reactor.seconds()
        while True:
            sessions = await fowld.sessions()
            now = ctx.reactor.seconds()
            write(HOME_AND_CLEAR + top_screen(sessions, before, now - then, time.time()) + "\n")
            before, then = reading(sessions), now
            await deferLater(ctx.reactor, ctx.args.interval, lambda: None)
    except CancelledError:
        return ExitCode.OK
    finally:
        write(LEAVE)
        fowld.disconnect()


# --- Offline ----------------------------------------------------------------------------------


def check(args: argparse.Namespace, out: Output) -> int:
    """Validate profile files without fowld: ``FILE:LINE: message`` on stderr for each bad one."""
    results = check_files(args.files)
    all_ok = all(r.ok for r in results)
    if out.json_mode:
        out.result("", {"ok": all_ok, "files": [result_json(r) for r in results]})
    else:
        for r in results:
            if r.ok:
                out.result(summary_line(r), None)
            else:
                out.tell(r.error)
            for warning in r.warnings:
                out.tell(f"warning: {warning}")
    return ExitCode.OK if all_ok else ExitCode.FAILED
