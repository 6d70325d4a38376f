"""Changing what a running session forwards: ``offer``, ``want``, ``withdraw``, ``unwant``."""

from __future__ import annotations

from fowlctl.errors import ExitCode
from fowlctl.model import session_json
from fowlctl.render import forwards_lines

FREE_PORT = "tcp:0"  # what a client without LISTEN listens on: a free loopback port, as in profiles

# command -> (Session method, its signature, the verb of the message)
CHANGES = {
    "offer": ("AddService", "ss", "now offers"),
    "want": ("AddClient", "ss", "now wants"),
    "withdraw": ("RemoveService", "s", "no longer offers"),
    "unwant": ("RemoveClient", "s", "no longer wants"),
}


def _arguments(command: str, args) -> list[str]:
    if command == "offer":
        return [args.name, args.address]
    if command == "want":
        return [args.name, args.listen or FREE_PORT]
    return [args.name]


async def change(ctx, command: str) -> int:
    """Add or remove one forward of a running session, then show its forwards as they are now."""
    method, signature, verb = CHANGES[command]
    fowld = await ctx.connect()
    try:
        view = await fowld.find_session(ctx.args.session)
        await fowld.call_session(view.object_path, view.id, method, signature, _arguments(command, ctx.args))
        view = await fowld.session(view.object_path, view.id)
    finally:
        fowld.disconnect()
    lines = [f"Session {view.id} {verb} {ctx.args.name}. Forwarding now:"]
    lines += [f"  {line}" for line in forwards_lines(view)] or ["  nothing"]
    full = session_json(view)
    data = {"session": view.id, "services": full["services"], "clients": full["clients"]}
    ctx.out.result("\n".join(lines), data)
    return ExitCode.OK
