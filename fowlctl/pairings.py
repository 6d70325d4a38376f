"""Pairings in fowlctl: the --pair/--expires/--lifetime options, `pairings` and `forget`."""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

from fowlctl.errors import ExitCode
from fowlctl.render import format_duration, table

COMMANDS: dict[str, tuple[str, str]] = {
    "pairings": (
        "list the pairings this computer keeps (peers it meets again with no code)",
        """\
A pairing is made once, with `invite PROFILE --pair NAME` on one side and
`accept PROFILE CODE --pair NAME` on the other. Afterwards a profile with
`peer: NAME` (instead of `code:`) meets that peer again by itself, with no code.
Secrets are never shown.

examples:
  fowlctl pairings
  fowlctl pairings --json
""",
    ),
    "forget": (
        "forget a pairing: it can never meet again (a connected peer forgets it too)",
        """\
examples:
  fowlctl forget alice-laptop
""",
    ),
}

START_OPTIONS_EPILOG = """
  fowlctl invite ssh-share --pair bob --expires 30d
  fowlctl accept ssh-join 7-crossover-clockwork --pair alice --lifetime 2h

pairing (both sides must ask for it):
  --pair NAME        once connected, store a pairing called NAME on this side;
                     a profile with `peer: NAME` then meets the peer again with no code
  --expires TIME     with --pair: the pairing ends after TIME (the shorter of the two
                     sides' choices applies); without --pair (invite): the invitation
                     ends if nobody joins within TIME
  --lifetime TIME    the session ends itself after TIME; both sides are told why
  TIME is 90s, 15m, 2h or 30d.
"""


def add_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pair", metavar="NAME", help="store a pairing called NAME once the peer is connected"
    )
    parser.add_argument(
        "--expires", metavar="TIME", help="the pairing's expiry with --pair; else the invitation's (15m, 30d)"
    )
    parser.add_argument("--lifetime", metavar="TIME", help="end the session after TIME (2h, 90m)")


def start_options(args: argparse.Namespace) -> dict[str, str] | None:
    """The a{sv} options of InviteWith/AcceptWith, or None when none was given."""
    options = {k: getattr(args, k, None) for k in ("pair", "expires", "lifetime")}
    options = {k: v for k, v in options.items() if v}
    return options or None


def add_commands(made: dict[str, argparse.ArgumentParser]) -> None:
    made["forget"].add_argument("name", metavar="NAME", help="the pairing's name (see `fowlctl pairings`)")


def _when(seconds: float) -> str:
    if not seconds:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


def pairing_json(p: dict) -> dict:
    return {
        "name": str(p["name"]),
        "peer_name": str(p["peer_name"]),
        "mailbox": str(p["mailbox"]),
        "created": float(p["created"]),
        "last_met": float(p["last_met"]),
        "expires": float(p["expires"]) or None,
        "running": bool(p["running"]),
    }


def pairings_text(pairings: list[dict], errors: list[tuple[str, str]], now: float) -> str:
    parts = []
    if pairings:
        rows = []
        for p in sorted(pairings, key=lambda p: p["name"]):
            expires = p["expires"]
            if expires and expires <= now:
                expiry = "expired"
            elif expires:
                expiry = f"{_when(expires)} (in {format_duration(expires - now)})"
            else:
                expiry = "never"
            rows.append(
                (
                    p["name"],
                    p["peer_name"],
                    _when(p["created"]),
                    f"{_when(p['last_met'])} ({format_duration(now - p['last_met'])} ago)",
                    expiry,
                    "yes" if p["running"] else "no",
                )
            )
        parts.append(table(("NAME", "PEER CALLS IT", "CREATED", "LAST MET", "EXPIRES", "RUNNING"), rows))
    else:
        parts.append("No pairings. Make one with `fowlctl invite PROFILE --pair NAME`.")
    if errors:
        parts.append("Pairing files skipped:\n" + "\n".join(f"  {message}" for _, message in errors))
    return "\n\n".join(parts)


async def pairings(ctx: Any) -> int:
    fowld = await ctx.connect()
    try:
        found = [pairing_json(p) for p in await fowld.manager_property("Pairings")]
        errors = [(str(f), str(m)) for f, m in await fowld.manager_property("PairingErrors")]
    finally:
        fowld.disconnect()
    data = {"pairings": found, "errors": [{"file": f, "message": m} for f, m in errors]}
    ctx.out.result(pairings_text(found, errors, time.time()), data)
    return ExitCode.OK


async def forget(ctx: Any) -> int:
    fowld = await ctx.connect()
    try:
        await fowld.call_manager("Forget", "s", [ctx.args.name])
    finally:
        fowld.disconnect()
    text = f"Forgot pairing {ctx.args.name}: it can never meet again."
    ctx.out.result(text, {"forgotten": ctx.args.name})
    return ExitCode.OK
