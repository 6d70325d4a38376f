"""Human-readable output: tables, session details, sizes and durations."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from fowlctl.model import CONNECTED, ProfileView, SessionView

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB``; plain bytes below 1024."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def qr_code(text: str) -> str:
    """``text`` as a QR code drawn with block characters, light modules as blocks (for dark terminals)."""
    import io

    import qrcode  # only invite on a terminal needs it

    qr = qrcode.QRCode(border=2)
    qr.add_data(text)
    drawn = io.StringIO()
    qr.print_ascii(out=drawn, invert=True)
    return drawn.getvalue().rstrip("\n")


def counted(number: int, noun: str) -> str:
    """``1 session``, ``2 sessions``: the noun agrees with the number."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def format_duration(seconds: float) -> str:
    """A coarse, readable duration: ``42 s``, ``5 min``, ``2 h 5 min``, ``3 d 4 h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def format_verifier(verifier: str) -> str:
    """Groups of four hex digits, easier to read aloud and compare."""
    return " ".join(verifier[i : i + 4] for i in range(0, len(verifier), 4))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [str(row[-1])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def peer_summary(s: SessionView) -> str:
    """How the peer is reached: ``direct``, ``relay``, or ``-`` while there is no connection."""
    if s.state == CONNECTED and s.peer_connected:
        return s.path if s.path != "unknown" else "connected"
    return "-"


def sessions_table(sessions: Sequence[SessionView]) -> str:
    if not sessions:
        return (
            "No sessions. Start one with `fowlctl invite --offer NAME=ADDR`"
            " or `fowlctl accept CODE --want NAME` (or with a PROFILE)."
        )
    rows = [
        (
            s.id,
            s.profile,
            s.state,
            peer_summary(s),
            f"{s.open_connections}/{s.total_connections}",
            f"{format_bytes(s.bytes_in)} / {format_bytes(s.bytes_out)}",
        )
        for s in sorted(sessions, key=_session_order)
    ]
    return table(("ID", "PROFILE", "STATE", "PEER", "CONNS(OPEN/ALL)", "BYTES(IN/OUT)"), rows)


def _session_order(s: SessionView) -> tuple[int, str]:
    return (s.created_usec, s.id)


def forwards_lines(s: SessionView) -> list[str]:
    """One line per service offered and client wanted, with its state."""
    lines = []
    for v in s.services:
        why = f" ({v.reason})" if v.reason else ""
        lines.append(f"offers {v.name} -> {v.connect}  [{v.state}{why}]")
    for c in s.clients:
        # A listener asked for port 0 says which port it got.
        port = f" (port {c.port})" if c.port and f":{c.port}" not in c.listen else ""
        why = f" ({c.reason})" if c.reason else ""
        lines.append(f"wants  {c.name} <- {c.listen}{port}  [{c.state}{why}]")
    return lines


def session_details(s: SessionView, now: float) -> str:
    """Every property of one session, for ``fowlctl status``; ``now`` in seconds since the epoch."""
    state = s.state + (f" ({s.reason})" if s.reason else "")
    rows = [("State", state)]
    if s.code:
        rows.append(("Code", s.code))
    if s.verifier:
        rows.append(("Verifier", format_verifier(s.verifier)))
    if s.peer_connected:
        hint = f" ({s.hint})" if s.hint else ""
        rows.append(("Peer", f"connected via {s.path}{hint}, generation {s.generation}"))
    else:
        rows.append(("Peer", "not connected"))
    rows.append(("Mailbox", f"{s.mailbox_url} ({s.mailbox_state or 'unknown'})"))
    forwards = forwards_lines(s) or ["nothing"]
    rows.append(("Forwards", forwards[0]))
    rows.extend(("", line) for line in forwards[1:])
    connections = f"{s.open_connections} open, {s.total_connections} in all"
    if s.refused_connections or s.lost_connections:
        connections += f", {s.refused_connections} refused, {s.lost_connections} lost"
    rows.append(("Connections", connections))
    rows.append(("Bytes", f"{format_bytes(s.bytes_in)} in, {format_bytes(s.bytes_out)} out"))
    if s.created_usec:
        created = s.created_usec / 1e6
        when = datetime.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(("Started", f"{when} ({format_duration(now - created)} ago)"))
    rows.append(("Restarts", str(s.restarts)))
    width = max(len(k) for k, _ in rows) + 2
    body = "\n".join(f"  {(k + ':') if k else '':<{width}}{v}" for k, v in rows)
    return f"{s.id} (profile {s.profile})\n{body}"


def profiles_text(profiles: Sequence[ProfileView], errors: Sequence[tuple[str, str]]) -> str:
    """The profiles fowld can start, then the files it could not load."""
    parts = []
    if profiles:
        rows = []
        for p in sorted(profiles, key=lambda p: p.name):
            how = f"pairing {p.peer}" if p.peer else "fixed code" if p.has_code else ""
            start = how + (", autostart" if p.autostart else "") if how else "invite/accept"
            rows.append((p.name, start, p.restart, p.description or "-"))
        parts.append(table(("PROFILE", "START WITH", "RESTART", "DESCRIPTION"), rows))
        for p in sorted(profiles, key=lambda p: p.name):
            forwards = [f"offers {s}" for s in p.services] + [f"wants  {c}" for c in p.clients]
            parts.append(f"{p.name} ({p.path}):\n" + "\n".join(f"  {f}" for f in forwards))
    else:
        parts.append("No valid profiles. Add NAME.yaml files to ~/.config/fowl/profiles/.")
    if errors:
        parts.append(
            "Profiles with errors (not loaded):\n" + "\n".join(f"  {message}" for _, message in errors)
        )
    return "\n\n".join(parts)
