"""Unit tests of fowld.engine.absence: how long the peer has been away, on a test clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from fowld.engine.absence import Away, PeerAbsence, duration, next_milestone
from fowld.engine.status import Phase


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (5, 119, 120, 3599, 7200, 7260 + 1200)] == [
        "5 s",
        "119 s",
        "2 min",
        "59 min",
        "2 h",
        "2 h 21 min",
    ]


def test_milestones_grow_then_come_hourly():
    assert next_milestone(0) == 30
    assert next_milestone(30) == 60
    assert next_milestone(3600) == 7200
    assert next_milestone(5 * 3600 + 1) == 6 * 3600


def test_an_outage_is_reported_at_each_milestone_until_the_peer_is_back():
    clock, told, reasons = Clock(), [], []
    absence = PeerAbsence(clock, lambda reason: reasons.append(reason), told.append, lambda: 1_000_000.0)
    absence.follow(Phase.CONNECTED)
    clock.advance(100)
    assert told == [] and absence.away is None
    absence.follow(Phase.RECONNECTING)
    absence.follow(Phase.RECONNECTING)  # still the same outage
    for _ in range(3 * 3600):
        clock.advance(1)
    assert [a.seconds for a in told] == [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800]
    assert {a.since for a in told} == {1_000_000.0}
    assert reasons[-1].endswith("(3 h ago)") and reasons[-1].startswith("peer unreachable since")
    assert len(reasons) == len(told)
    absence.follow(Phase.CONNECTED)
    clock.advance(7200)
    assert len(told) == 10 and absence.away is None and not clock.getDelayedCalls()


def test_a_session_that_ends_stops_counting():
    clock, told = Clock(), []
    absence = PeerAbsence(clock, lambda reason: None, told.append)
    absence.follow(Phase.RECONNECTING)
    absence.follow(Phase.CLOSING)
    clock.advance(600)
    assert told == [] and not clock.getDelayedCalls()
    assert Away(0.0, 59).reason.endswith("(59 s ago)")


def test_by_default_no_session_gives_up_on_an_absent_peer():
    from fowld.cli import build_parser
    from fowld.daemon.options import SessionOptions
    from fowld.stdio.main import config_from_args

    assert config_from_args(build_parser().parse_args(["--stdio"])).peer_lost_timeout is None
    assert SessionOptions().peer_lost_timeout is None
    chosen = build_parser().parse_args(["--stdio", "--peer-lost-timeout", "30"])
    assert config_from_args(chosen).peer_lost_timeout == 30
