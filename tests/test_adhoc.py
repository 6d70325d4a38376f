"""Sharing with no profile files: `invite --offer ...` on one bus, `accept CODE --want ...` on another.

Alice's fowld takes its mailbox and transit relay from fowld.yaml; bob's fowld has a
default mailbox nobody listens on, and bob names the real one with --mailbox.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_fowlctl import (
    STEP_TIMEOUT,
    Side,
    _close_all,
    _json_line,
    _start_side,
    echo_server,
    echo_through,
)

from fowlctl import cli
from fowlctl.errors import ExitCode
from fowld import __version__
from fowld.engine import rules
from harness.servers import ProcessGroup, free_port, read_line
from harness.wait import until

__all__ = ["echo_server"]  # a fixture these tests use


@pytest.fixture(scope="module")
def adhoc_pair(tmp_path_factory, mailbox, transit_relay) -> Iterator[tuple[Side, Side]]:
    group = ProcessGroup(tmp_path_factory.mktemp("adhoc-daemons"))
    settings = f"mailbox: {mailbox.url}\ntransit-relay: {transit_relay.hint}\n"
    nowhere = f"ws://127.0.0.1:{free_port()}/v1"
    with tempfile.TemporaryDirectory(prefix="fowl-adhoc-") as directory:
        try:
            alice = _start_side(group, "alice", Path(directory, "a"), settings=settings)
            bob = _start_side(group, "bob", Path(directory, "b"), fowld_args=("--mailbox", nowhere))
            yield alice, bob
        finally:
            group.stop_all()


def test_invite_offer_and_accept_want_forward_bytes(
    adhoc_pair, processes, echo_server, mailbox, transit_relay
):
    alice, bob = adhoc_pair
    assert not list(alice.profiles.iterdir()) and not list(bob.profiles.iterdir())  # no profile files
    invite = alice.spawn_ctl(
        processes, "invite", "--offer", f"echo=tcp:127.0.0.1:{echo_server}", "--timeout", str(STEP_TIMEOUT)
    )
    lines = [read_line(invite.stdout, STEP_TIMEOUT).decode() for _ in range(5)]
    assert lines[0].startswith("Session adhoc-1 is waiting for your peer")
    code = lines[2].strip()
    assert re.fullmatch(r"\d+-\w+-\w+", code)
    assert lines[4] == f"They join with:  fowlctl accept {code} --want echo\n"

    accepted = bob.ctl(
        "accept", code, "--want", "echo", "--mailbox", mailbox.url, "--transit-relay", transit_relay.hint
    )
    assert accepted.returncode == 0, accepted.stderr
    port = int(
        re.search(r"wants  echo <- tcp:0:interface=127.0.0.1 \(port (\d+)\)  \[listening\]", accepted.stdout)[
            1
        ]
    )
    assert invite.wait(STEP_TIMEOUT) == 0
    assert "offers echo -> tcp:host=127.0.0.1" in invite.stdout.read().decode()
    echo_through(port, 20000)
    (bob_session,) = bob.sessions()
    assert (bob_session["profile"], bob_session["mailbox_url"]) == ("adhoc", mailbox.url)
    (alice_session,) = alice.sessions()
    assert alice_session["mailbox_url"] == mailbox.url  # from fowld.yaml
    _close_all(alice, bob)


def test_want_with_a_fixed_port_and_json(adhoc_pair, processes, echo_server, mailbox):
    alice, bob = adhoc_pair
    listen = free_port()
    invite = alice.spawn_ctl(processes, "invite", "--offer", f"echo={echo_server}", "--json", "--no-qr")
    first = _json_line(invite)
    assert first["event"] == "code"
    accepted = bob.ctl(
        "accept", first["code"], "--want", f"echo={listen}", "--mailbox", mailbox.url, "--json"
    )
    assert accepted.returncode == 0, accepted.stderr
    connected = json.loads(accepted.stdout.splitlines()[-1])
    (client,) = connected["session"]["clients"]
    assert (client["name"], client["port"], client["state"]) == ("echo", listen, "listening")
    echo_through(listen, 3000)
    _close_all(alice, bob)


def test_inline_profiles_are_validated_as_files_are(adhoc_pair):
    alice, _ = adhoc_pair
    result = alice.ctl("invite", "--offer", "echo=tcp:localhost", "--json")
    assert result.returncode == ExitCode.FAILED
    error = json.loads(result.stdout)["error"]
    assert error["name"] == "org.fowl.Fowld1.Error.InvalidProfile"
    assert error["message"] == (
        "inline profile: services[0].connect: connect address 'tcp:localhost': expected tcp:HOST:PORT"
    )
    result = alice.ctl("invite", "--want", "a b")
    assert result.returncode == ExitCode.FAILED
    assert result.stderr == f"fowlctl: inline profile: clients[0].name 'a b' {rules.NAME_RULE}\n"
    result = alice.ctl("invite", "--want", "web", "--mailbox", "http://x")
    assert result.stderr == "fowlctl: inline profile: mailbox 'http://x' must be a ws:// or wss:// URL\n"
    assert not alice.sessions()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["invite"], "say what to forward: invite PROFILE, or --offer NAME=ADDR"),
        (["accept", "7-a-b"], "say what to forward: accept PROFILE"),
        (["accept", "share"], "'share' is not a code (codes start with a number and a dash"),
        (["accept", "7-a-b", "share"], "the code comes last: fowlctl accept PROFILE CODE"),
        (["accept", "a", "7-a-b", "c"], "unrecognized arguments: c"),
        (["invite", "share", "--offer", "a=22"], "give either a PROFILE or --offer/--want"),
        (["invite", "share", "--mailbox", "ws://x/v1"], "give either a PROFILE or --offer/--want"),
        (["invite", "--offer", "ssh"], "expected NAME=ADDR (e.g. ssh=tcp:localhost:22), got 'ssh'"),
        (["accept", "7-a-b", "--want", "ssh="], "expected NAME or NAME=LISTEN"),
    ],
)
def test_ambiguous_or_incomplete_command_lines_exit_2(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "usage: fowlctl" in err and message in err


def test_profile_and_code_still_parse() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["accept", "share", "7-a-b"])
    cli.adhoc.resolve(parser, args)
    assert (args.profile, args.code, args.inline) == ("share", "7-a-b", None)
    args = parser.parse_args(["accept", "7-a-b", "--want", "ssh", "--want", "web=8080", "--offer", "x=22"])
    cli.adhoc.resolve(parser, args)
    assert args.profile is None and args.code == "7-a-b"
    assert args.inline.profile() == {
        "services": [{"name": "x", "connect": "22"}],
        "clients": [{"name": "ssh"}, {"name": "web", "listen": "8080"}],
    }
    assert (
        args.inline.join_command("7-a-b") == "fowlctl accept 7-a-b --want x --offer ssh=ADDR --offer web=ADDR"
    )


def test_fowld_refuses_a_bad_default_mailbox(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fowld", "--mailbox", "http://nope"],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "fowld: the command line: mailbox 'http://nope' must be a ws:// or wss:// URL\n"
    (tmp_path / "fowl").mkdir()
    (tmp_path / "fowl" / "fowld.yaml").write_text("mailbox: ws://ok/v1\ntransit-rely: tcp:x:1\n")
    result = subprocess.run(
        [sys.executable, "-m", "fowld"],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"fowld: {tmp_path}/fowl/fowld.yaml:2: unknown key 'transit-rely' (did you mean 'transit-relay'?)\n"
    )


def _connect_pair(alice: Side, bob: Side, processes, echo_server: int, mailbox) -> tuple[str, str]:
    """An ad-hoc session offering echo on alice's side, wanted by bob; returns both session ids."""
    invite = alice.spawn_ctl(processes, "invite", "--offer", f"echo={echo_server}", "--json")
    first = _json_line(invite)
    accepted = bob.ctl("accept", first["code"], "--want", "echo", "--mailbox", mailbox.url, "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert invite.wait(STEP_TIMEOUT) == 0
    return first["session"], json.loads(accepted.stdout.splitlines()[-1])["session"]["id"]


def test_offer_want_withdraw_unwant_on_a_running_session(adhoc_pair, processes, echo_server, mailbox):
    alice, bob = adhoc_pair
    alice_id, bob_id = _connect_pair(alice, bob, processes, echo_server, mailbox)
    listen = free_port()
    offered = alice.ctl("offer", alice_id, "more", f"tcp:127.0.0.1:{echo_server}")
    assert offered.returncode == 0, offered.stderr
    assert offered.stdout.startswith(f"Session {alice_id} now offers more. Forwarding now:\n")
    assert "  offers more -> tcp:host=127.0.0.1" in offered.stdout
    wanted = bob.ctl_json("want", bob_id.rsplit("-", 1)[1], "more", str(listen))
    assert wanted["session"] == bob_id
    assert [c["name"] for c in wanted["clients"]] == ["echo", "more"]

    def listening() -> bool:
        (s,) = bob.sessions()
        return any(c["name"] == "more" and c["state"] == "listening" for c in s["clients"])

    until(listening, "bob listening for 'more'", STEP_TIMEOUT, 0.1)
    echo_through(listen, 4000)

    unwanted = bob.ctl("unwant", bob_id, "more")
    assert unwanted.returncode == 0, unwanted.stderr
    assert unwanted.stdout.startswith(f"Session {bob_id} no longer wants more.")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listen), timeout=5).close()
    withdrawn = alice.ctl_json("withdraw", alice_id, "more")
    assert [s["name"] for s in withdrawn["services"]] == ["echo"]
    again = alice.ctl("withdraw", alice_id, "more")
    assert again.returncode == ExitCode.FAILED
    assert again.stderr == f"fowlctl: session {alice_id} offers no service 'more'\n"
    bad = bob.ctl("want", bob_id, "x", "tcp:nope")
    assert bad.returncode == ExitCode.FAILED and bad.stderr.startswith("fowlctl: listen address 'tcp:nope'")
    _close_all(alice, bob)


def test_watch_starts_with_a_snapshot(adhoc_pair, processes, echo_server, mailbox):
    alice, bob = adhoc_pair
    alice_id, _ = _connect_pair(alice, bob, processes, echo_server, mailbox)
    watch = alice.spawn_ctl(processes, "watch", "--json")
    present = _json_line(watch)
    assert (present["event"], present["session"], present["state"]) == (
        "session-present",
        alice_id,
        "connected",
    )
    assert present["profile"] == "adhoc" and present["open_connections"] == 0
    _close_all(alice, bob)
    events = [_json_line(watch) for _ in range(3)]
    assert [(e["event"], e["session"]) for e in events] == [
        ("state-changed", alice_id),
        ("state-changed", alice_id),
        ("session-removed", alice_id),
    ]
    watch.terminate()


def test_accept_gives_up_when_nobody_holds_the_code(adhoc_pair, mailbox):
    _, bob = adhoc_pair
    started = time.monotonic()
    result = bob.ctl(
        "accept",
        "917-nobody-here",
        "--want",
        "x",
        "--mailbox",
        mailbox.url,
        "--answer-timeout",
        "3",
        "--json",
    )
    assert result.returncode == ExitCode.TIMEOUT
    error = json.loads(result.stdout.splitlines()[-1])["error"]
    assert error["name"] == "org.fowl.fowlctl.Error.NobodyAnswered"
    assert re.fullmatch(
        r"nobody answered the code within 3 s \(check the code with your peer: their invite must still be"
        r" waiting\); closed session adhoc-\d+",
        error["message"],
    )
    assert 3 <= time.monotonic() - started < STEP_TIMEOUT
    until(lambda: not bob.sessions(), "the unanswered session closed", STEP_TIMEOUT, 0.1)


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "fowlctl", "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, f"fowlctl {__version__}\n")
