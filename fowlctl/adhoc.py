"""Sessions without a profile file: ``--offer``/``--want`` on the command line become an inline profile.

``invite [PROFILE]`` and ``accept [PROFILE] CODE`` take either a profile name or
forwards given inline, never both. For ``accept``, one word is the code; two
words are the profile, then the code. A code always starts with a number and a
dash (``7-crossover-clockwork``), which is how a lone word is told apart.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

from fowld.dbus.values import typed
from fowld.engine import rules

CODE_HELP = "the code your peer gave you, e.g. 7-crossover-clockwork (one word is the code)"
PLACEHOLDER_ADDRESS = "ADDR"


@dataclass(frozen=True)
class Inline:
    """Forwards given on the command line, and where to meet the peer."""

    offers: tuple[tuple[str, str], ...] = ()  # (name, connect address)
    wants: tuple[tuple[str, str | None], ...] = ()  # (name, listen address or None: a free port)
    mailbox: str | None = None
    transit_relay: str | None = None

    def profile(self) -> dict[str, object]:
        """The inline profile as fowld's InviteInline/AcceptInline take it (keys as in profile files)."""
        data: dict[str, object] = {}
        if self.offers:
            data["services"] = typed("aa{sv}", [{"name": n, "connect": a} for n, a in self.offers])
        if self.wants:
            clients = [{"name": n} if a is None else {"name": n, "listen": a} for n, a in self.wants]
            data["clients"] = typed("aa{sv}", clients)
        if self.mailbox:
            data["mailbox"] = self.mailbox
        if self.transit_relay:
            data["transit-relay"] = self.transit_relay
        return data

    def join_command(self, code: str) -> str:
        """What the peer types to join: each of our offers is their want, each want their offer."""
        words = ["fowlctl", "accept", code]
        for name, _ in self.offers:
            words += ["--want", name]
        for name, _ in self.wants:
            words += ["--offer", f"{name}={PLACEHOLDER_ADDRESS}"]
        if self.mailbox:
            words += ["--mailbox", self.mailbox]
        if self.transit_relay:
            words += ["--transit-relay", self.transit_relay]
        return shlex.join(words)


def offer_spec(text: str) -> tuple[str, str]:
    """``NAME=ADDR`` of ``--offer``."""
    name, sep, address = text.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"expected NAME=ADDR (e.g. ssh=tcp:localhost:22), got {text!r}")
    return name, address


def want_spec(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=LISTEN`` of ``--want``."""
    name, sep, listen = text.partition("=")
    if not name or (sep and not listen):
        raise argparse.ArgumentTypeError(f"expected NAME or NAME=LISTEN (e.g. ssh=2222), got {text!r}")
    return name, listen if sep else None


def add_inline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("forwards given here instead of a PROFILE")
    group.add_argument(
        "--offer",
        action="append",
        type=offer_spec,
        default=[],
        metavar="NAME=ADDR",
        help="offer a service the peer may reach, e.g. ssh=tcp:localhost:22 or web=8000 (repeatable)",
    )
    group.add_argument(
        "--want",
        action="append",
        type=want_spec,
        default=[],
        metavar="NAME[=LISTEN]",
        help="want the peer's service NAME, listening on LISTEN (e.g. 2222 or tcp:2222); "
        "without LISTEN a free loopback port, shown once connected (repeatable)",
    )
    group.add_argument("--mailbox", metavar="URL", help="mailbox server (default: fowld's)")
    group.add_argument(
        "--transit-relay", metavar="HINT", help="transit relay, tcp:HOST:PORT (default: fowld's)"
    )


def looks_like_code(word: str) -> bool:
    return bool(rules.CODE_PATTERN.fullmatch(word.strip()))


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.profile``, ``args.code`` and ``args.inline`` for invite and accept; usage errors exit 2."""
    if args.command == "accept":
        # argparse gives a lone word to CODE, two words to PROFILE and CODE.
        if args.profile is None and not looks_like_code(args.code):
            parser.error(
                f"{args.code!r} is not a code (codes start with a number and a dash, like"
                " 7-crossover-clockwork); with a profile: fowlctl accept PROFILE CODE"
            )
        if args.profile is not None and looks_like_code(args.profile) and not looks_like_code(args.code):
            parser.error("the code comes last: fowlctl accept PROFILE CODE")
    inline = Inline(tuple(args.offer), tuple(args.want), args.mailbox, args.transit_relay)
    has_forwards = bool(inline.offers or inline.wants)
    if args.profile is not None and (has_forwards or inline.mailbox or inline.transit_relay):
        parser.error(
            "give either a PROFILE or --offer/--want (with --mailbox, --transit-relay), not both:"
            " a profile names its forwards and mailbox in its file"
        )
    if args.profile is None and not has_forwards:
        parser.error(
            f"say what to forward: {args.command} PROFILE, or --offer NAME=ADDR and/or --want NAME[=LISTEN]"
        )
    args.inline = inline if args.profile is None else None
