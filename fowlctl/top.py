"""``fowlctl top``: a live view of every session and open connection, with rates and totals.

The screen is a pure function of two readings of fowld's sessions and the time
between them; the command redraws it every interval, on a terminal only.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from fowlctl.model import SessionView
from fowlctl.render import counted, format_bytes, format_duration, peer_summary, table

# A reading: (bytes_in, bytes_out) by session id, and by (session id, connection id).
Reading = Mapping[object, tuple[int, int]]

ENTER = "\x1b[?1049h\x1b[?25l"  # the terminal's alternate screen, cursor hidden (as top does)
LEAVE = "\x1b[?25h\x1b[?1049l"
HOME_AND_CLEAR = "\x1b[H\x1b[J"


def reading(sessions: Sequence[SessionView]) -> dict[object, tuple[int, int]]:
    """The byte counters of every session and connection, to compute rates against later."""
    counters: dict[object, tuple[int, int]] = {}
    for s in sessions:
        counters[s.id] = (s.bytes_in, s.bytes_out)
        for c in s.connections:
            counters[(s.id, c.id)] = (c.bytes_in, c.bytes_out)
    return counters


def _rates(key: object, now: tuple[int, int], before: Reading, elapsed: float) -> str:
    if key not in before or elapsed <= 0:
        return "-"
    (was_in, was_out) = before[key]
    rate_in = max(0, now[0] - was_in) / elapsed
    rate_out = max(0, now[1] - was_out) / elapsed
    return f"{format_bytes(int(rate_in))}/s / {format_bytes(int(rate_out))}/s"


def top_screen(sessions: Sequence[SessionView], before: Reading, elapsed: float, now: float) -> str:
    """What ``top`` shows: a header, then each session with its open connections beneath it."""
    ordered = sorted(sessions, key=lambda s: (s.created_usec, s.id))
    open_count = sum(s.open_connections for s in ordered)
    clock = datetime.datetime.fromtimestamp(now).strftime("%H:%M:%S")
    what = f"{counted(len(ordered), 'session')}, {counted(open_count, 'open connection')}"
    header = f"fowld: {what}  {clock}  (Ctrl-C quits)"
    if not ordered:
        return f"{header}\n\nNo sessions."
    rows = []
    for s in ordered:
        totals = f"{format_bytes(s.bytes_in)} / {format_bytes(s.bytes_out)}"
        rate = _rates(s.id, (s.bytes_in, s.bytes_out), before, elapsed)
        conns = f"{s.open_connections}/{s.total_connections}"
        rows.append((s.id, s.state, peer_summary(s), conns, rate, totals))
        for c in sorted(s.connections, key=lambda c: c.id):
            age = format_duration(now - c.opened_usec / 1e6)
            what = f"  #{c.id} {c.service} ({c.direction}, {age})"
            rate = _rates((s.id, c.id), (c.bytes_in, c.bytes_out), before, elapsed)
            rows.append((what, "", "", "", rate, f"{format_bytes(c.bytes_in)} / {format_bytes(c.bytes_out)}"))
    columns = ("SESSION", "STATE", "PEER", "CONNS", "RATE(IN/OUT)", "TOTAL(IN/OUT)")
    return f"{header}\n\n{table(columns, rows)}"
