"""Pairing: two real fowld daemons pair once through a code, then meet again with none.

Real mailbox, real dbus-daemons, real fowld processes; every transfer is
hash-checked. Times are measured from the moment the restarted daemon owns its
bus name to the first complete transfer.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_daemon import (
    BUS_NAME,
    CALL_TIMEOUT,
    MANAGER,
    MANAGER_PATH,
    SESSION,
    BlobServer,
    Fowld,
    busctl,
    call,
    properties,
    start_fowld,
    write_profile,
)

from fowld.daemon.pairings import PairingStore
from fowld.engine import pairing
from harness.peers import HashServer, exchange, start_ours, start_upstream
from harness.servers import ProcessGroup, free_port, start_mailbox
from harness.wait import until


def wait_for(what: str, check, timeout: float = 20.0):
    return until(check, what, timeout, 0.1)


RESTART_TARGET = 10.0  # seconds from "restarted daemon is up" to data flowing (the target)
MARGIN = 5.0  # a loaded 2-core test machine: honest slack over the target


def gdbus_call(bus: str, method: str, *args: str) -> str:
    result = subprocess.run(
        ["gdbus", "call", "--address", bus, "--dest", BUS_NAME, "--object-path", MANAGER_PATH,
         "--method", f"{MANAGER}.{method}", *args],
        capture_output=True, text=True, timeout=CALL_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def fetch_blob(port: int, blob: bytes, timeout: float) -> float:
    """Seconds until a full, intact copy of ``blob`` came through ``port`` (retrying)."""
    import socket

    started = time.monotonic()
    deadline = started + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(10)
                sock.sendall(b"GET\n")
                got = bytearray()
                while len(got) < len(blob) and (chunk := sock.recv(65536)):
                    got += chunk
            if hashlib.sha256(got).digest() == hashlib.sha256(blob).digest():
                return time.monotonic() - started
            last = f"{len(got)} bytes, not the blob"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError(f"no intact transfer within {timeout} s (last: {last})")


@dataclass
class Side:
    name: str
    bus: str
    config: Path
    fowld: Fowld | None = None

    @property
    def state(self) -> Path:
        return self.config / "state"

    @property
    def pairings_dir(self) -> Path:
        return self.state / "fowl" / "pairings"


class Pairs:
    """Alice offers "blob"; bob wants it on ``listen_port``. Each pairs as "to-<other>"."""

    def __init__(self, processes: ProcessGroup, buses: tuple[str, str], mailbox: str, relay: str, root: Path):
        self.processes = processes
        self.mailbox = mailbox
        self.server = BlobServer(os.urandom(1024 * 1024 + 3))
        self.listen_port = free_port()
        self.alice = Side("alice", buses[0], root / "alice")
        self.bob = Side("bob", buses[1], root / "bob")
        head = f"mailbox: {mailbox}\ntransit-relay: {relay}\n"
        self.share = head + f"services:\n  - name: blob\n    connect: tcp:127.0.0.1:{self.server.port}\n"
        listen = f"tcp:{self.listen_port}:interface=127.0.0.1"
        self.join = head + f"clients:\n  - name: blob\n    listen: {listen}\n"
        write_profile(self.alice.config / "fowl/profiles", "share", self.share)
        write_profile(self.bob.config / "fowl/profiles", "join", self.join)

    def start(self, side: Side) -> float:
        """Start (or restart) a side's fowld; returns the monotonic time its bus name was owned."""
        side.fowld = start_fowld(self.processes, side.bus, side.config, XDG_STATE_HOME=str(side.state))
        return time.monotonic()

    def pair(self) -> tuple[str, str]:
        [a_path, code] = self.alice.fowld.call("InviteWith", "sa{sv}", "share", "1", "pair", "s", "to-bob")
        out = gdbus_call(self.bob.bus, "AcceptWith", "join", code, "{'pair': <'to-alice'>}")
        b_path = out.split("'")[1]
        for side, path in ((self.alice, a_path), (self.bob, b_path)):
            wait_for(
                f"{side.name} connected", lambda s=side, p=path: properties(s.bus, p)["State"] == "connected"
            )
        return a_path, b_path

    def meet_again_profiles(self) -> None:
        write_profile(
            self.alice.config / "fowl/profiles", "again", self.share + "peer: to-bob\nautostart: true\n"
        )
        write_profile(
            self.bob.config / "fowl/profiles", "again", self.join + "peer: to-alice\nautostart: true\n"
        )

    def session(self, side: Side, profile: str = "again") -> dict | None:
        return side.fowld.sessions().get(profile)

    def connected(self, side: Side, profile: str = "again") -> dict | None:
        s = self.session(side, profile)
        return s if s and s["State"] == "connected" else None


@pytest.fixture
def pairs(processes, dbus_bus, second_bus, mailbox, transit_relay, tmp_path):
    p = Pairs(processes, (dbus_bus.address, second_bus), mailbox.url, transit_relay.hint, tmp_path)
    yield p
    p.server.close()


def test_meeting_codes_are_secret_derived_digits_and_differ_per_role_slot_and_index():
    secret = bytes(range(32))
    points = pairing.meeting_points("inviter", 1_000_000.0)
    codes = [p.code(secret) for p in points]
    assert len(set(codes)) == len(codes) == 3 * pairing.CANDIDATES
    for code in codes:
        nameplate, password = code.split("-", 1)
        assert nameplate.isdigit() and len(nameplate) == pairing.NAMEPLATE_DIGITS <= 40
        assert len(password) == 64  # 256 bits into SPAKE2
    other = pairing.MeetingPoint(points[0].slot, 0, "acceptor").code(secret)
    assert other not in codes
    assert points[0].code(bytes(32)) != codes[0]  # another secret, other meeting points
    # The slot in use comes first, then its neighbours: clocks may disagree by a slot.
    assert [p.slot - points[0].slot for p in points[:3]] == [0, -1, 1]


def test_pair_then_meet_again_after_restarts_and_forget(pairs: Pairs, processes):
    alice, bob = pairs.alice, pairs.bob
    pairs.start(alice)
    pairs.start(bob)
    a_path, b_path = pairs.pair()

    # Both sides stored a pairing: private directory and files, secret never on D-Bus.
    for side, name, peer_name in ((alice, "to-bob", "to-alice"), (bob, "to-alice", "to-bob")):
        assert stat.S_IMODE(side.pairings_dir.stat().st_mode) == 0o700
        path = side.pairings_dir / f"{name}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        [found] = side.fowld.manager()["Pairings"]
        assert (found["name"], found["peer_name"], found["running"]) == (name, peer_name, False)
        assert "secret" not in found
    a_secret = json.loads((alice.pairings_dir / "to-bob.json").read_text())["secret"]
    assert a_secret == json.loads((bob.pairings_dir / "to-alice.json").read_text())["secret"]
    assert properties(alice.bus, a_path)["Code"] == "" and properties(bob.bus, b_path)["Code"] == ""
    assert "paired as 'to-bob'" in properties(alice.bus, a_path)["StateReason"]
    call(alice.bus, a_path, SESSION, "Close")

    # Profiles with `peer:` meet again by themselves, with no code.
    pairs.meet_again_profiles()
    for side in (alice, bob):
        side.fowld.call("Reload")
    for side in (alice, bob):
        wait_for(f"{side.name} to meet again", lambda s=side: pairs.connected(s), 30)
    fetch_blob(pairs.listen_port, pairs.server.blob, 20)
    assert [p["running"] for p in alice.fowld.manager()["Pairings"]] == [True]

    timings: dict[str, float] = {}
    # kill -9 of bob while connected; bob comes back at once.
    bob.fowld.process.kill()
    bob.fowld.process.wait(5)
    up = pairs.start(bob)
    fetch_blob(pairs.listen_port, pairs.server.blob, RESTART_TARGET + MARGIN)
    timings["kill -9"] = time.monotonic() - up
    reason = pairs.connected(alice)["StateReason"]
    assert "met again" in reason, reason

    # SIGTERM of alice (the offering side); it comes back.
    alice.fowld.process.send_signal(signal.SIGTERM)
    assert alice.fowld.process.wait(15) == 0
    # Bob hears that alice's fowld stops, not that the session ended for good.
    bob_view = wait_for(
        "bob to notice", lambda: (s := pairs.session(bob)) and s["State"] != "connected" and s, 20
    )
    assert "the peer's fowld is stopping" in bob_view["StateReason"], bob_view
    up = pairs.start(alice)
    fetch_blob(pairs.listen_port, pairs.server.blob, RESTART_TARGET + MARGIN)
    timings["SIGTERM"] = time.monotonic() - up

    # Both stopped by SIGTERM at once, both started again.
    for side in (alice, bob):
        side.fowld.process.send_signal(signal.SIGTERM)
    for side in (alice, bob):
        assert side.fowld.process.wait(15) == 0
    pairs.start(alice)
    up = pairs.start(bob)
    fetch_blob(pairs.listen_port, pairs.server.blob, 30)
    timings["both SIGTERM"] = time.monotonic() - up
    print("restart to first intact transfer:", {k: f"{v:.1f} s" for k, v in timings.items()})
    for what in ("kill -9", "SIGTERM"):
        assert timings[what] <= RESTART_TARGET + MARGIN, timings

    # Forget on alice while connected: bob is told and forgets too; neither can meet again.
    wait_for("both connected", lambda: pairs.connected(alice) and pairs.connected(bob), 30)
    bob_path = pairs.session(bob)["path"]
    alice.fowld.call("Forget", "s", "to-bob")
    assert not (alice.pairings_dir / "to-bob.json").exists()
    wait_for("bob to forget", lambda: not (bob.pairings_dir / "to-alice.json").exists(), 15)
    wait_for("bob's session to end", lambda: pairs.session(bob) is None, 15)
    assert bob.fowld.manager()["Pairings"] == []
    result = busctl(bob.bus, "call", BUS_NAME, MANAGER_PATH, MANAGER, "Start", "s", "again")
    assert result.returncode != 0 and "no pairing named 'to-alice'" in result.stderr
    log = processes.output(bob.fowld.process)[1]
    assert "the peer forgot pairing 'to-alice'" in log, log[-3000:]
    logs = log + processes.output(alice.fowld.process)[1]
    assert a_secret not in logs
    passwords = [
        p.code(bytes.fromhex(a_secret)).split("-", 1)[1]
        for role in pairing.ROLES
        for p in pairing.meeting_points(role, time.time())
    ]
    assert not any(password in logs for password in passwords)  # meeting passwords are never logged
    del bob_path


def test_pairing_store_skips_corrupt_and_world_readable_files(tmp_path):
    store = PairingStore(tmp_path / "pairings")
    agreed = pairing.PairingAgreed("good", "peer", os.urandom(32), "inviter", None)
    store.store_new(agreed, "ws://127.0.0.1:1/v1")
    (store.directory / "broken.json").write_text("{not json")
    (store.directory / "broken.json").chmod(0o600)
    shared = store.store_new(
        pairing.PairingAgreed("shared", "p", os.urandom(32), "acceptor", None), "ws://x/v1"
    )
    (store.directory / "shared.json").chmod(0o644)
    found, errors = store.load()
    assert [p.name for p in found] == ["good"]
    messages = dict(errors)
    assert str(store.directory / "broken.json") in messages
    assert "other users can read" in messages[str(store.directory / "shared.json")]
    assert shared.secret.hex() not in repr(messages) and shared.secret.hex() not in repr(shared)


def test_a_wrong_code_against_a_fixed_code_session_gets_one_attempt(processes, dbus_bus, mailbox, tmp_path):
    nameplate = 7000 + int.from_bytes(os.urandom(2), "big")
    code = f"{nameplate}-{os.urandom(4).hex()}-{os.urandom(4).hex()}"
    profile = f"mailbox: {mailbox.url}\ncode: {code}\nautostart: true\nrestart: always\n"
    profile += "clients:\n  - {name: web}\n"
    write_profile(tmp_path / "fowl/profiles", "fixed", profile)
    fowld = start_fowld(processes, dbus_bus.address, tmp_path)
    wait_for(
        "the fixed-code session to wait",
        lambda: (s := fowld.sessions().get("fixed")) and s["State"] == "waiting",
    )
    assert fowld.sessions()["fixed"]["Code"] == ""

    guesser = start_ours(processes, mailbox.url, "tcp:127.0.0.1:1", label="guesser")
    guesser.send("set-code", code=f"{nameplate}-wrong-guess")
    assert "wrong code" in guesser.wait_kind("error", timeout=20)["message"]
    # The session failed for good, saying why; it does not go back to waiting for another guess.
    wait_for("the session to end", lambda: "fixed" not in fowld.sessions(), 15)
    time.sleep(3)  # longer than the first restart back-off would have been
    assert "fixed" not in fowld.sessions()
    log = processes.output(fowld.process)[1]
    assert "ended: wrong code" in log and "restarts in" not in log
    assert code not in log and "a pairing is the safe way" in log
    # A person can start it again.
    [path] = fowld.call("Start", "s", "fixed")
    assert properties(fowld.bus, path)["State"] in ("starting", "waiting")


def test_stdio_pairing_with_upstream_forwards_and_says_why_none_was_stored(
    upstream_python, processes, mailbox, transit_relay, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    server = HashServer(("127.0.0.1", 0))
    try:
        ours = start_ours(processes, mailbox.url, transit_relay.hint, label="ours")
        upstream = start_upstream(processes, upstream_python, mailbox.url, transit_relay.hint)
        upstream.send("local", name="svc")
        ours.send("remote", name="svc", local_connect_port=server.port)
        ours.send("allocate-code", pair="upstream-peer")
        code = ours.wait_kind("code-allocated")["code"]
        upstream.send("set-code", code=code)
        declined = ours.wait_kind("pairing-declined", timeout=20)
        assert "the peer's fowl does not support pairing" in declined["reason"], declined
        port = upstream.wait_kind("listening", name="svc", timeout=20)["listening_port"]
        exchange(("127.0.0.1", port), 200_000, 300_000, seed=3)  # hash-checked both ways
        assert not (tmp_path / "state" / "fowl" / "pairings" / "upstream-peer.json").exists()
        assert ours.find("paired") == []
        upstream.stop()
    finally:
        server.stop()


def test_stdio_sides_that_both_ask_store_the_same_pairing(processes, mailbox, transit_relay, tmp_path):
    env = {}
    peers = []
    for name in ("left", "right"):
        env[name] = tmp_path / name
        peers.append(start_ours_with_state(processes, mailbox.url, transit_relay.hint, env[name], label=name))
    left, right = peers
    left.send("allocate-code", pair="to-right")
    code = left.wait_kind("code-allocated")["code"]
    right.send("set-code", code=code, pair="to-left")
    assert left.wait_kind("paired", timeout=20) == {
        "kind": "paired",
        "name": "to-right",
        "peer_name": "to-left",
    }
    assert right.wait_kind("paired", timeout=20)["peer_name"] == "to-right"
    [a] = PairingStore(env["left"] / "fowl" / "pairings").load()[0]
    [b] = PairingStore(env["right"] / "fowl" / "pairings").load()[0]
    assert a.secret == b.secret and (a.role, b.role) == ("inviter", "acceptor")
    assert a.secret.hex() not in json.dumps(left.lines + right.lines)
    for peer in peers:
        peer.close_stdin()
        assert peer.wait_exit() == 0


def start_ours_with_state(processes, mailbox_url: str, relay: str, state: Path, label: str):
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(state)
    try:
        return start_ours(processes, mailbox_url, relay, label=label)
    finally:
        if old is None:
            del os.environ["XDG_STATE_HOME"]
        else:
            os.environ["XDG_STATE_HOME"] = old


def standby_nameplate(side: Side, name: str) -> str:
    """The nameplate a side waits at now, from its pairing file (as a squatter would list it)."""
    data = json.loads((side.pairings_dir / f"{name}.json").read_text())
    point = pairing.MeetingPoint(*data["standby"], data["role"])
    return point.code(bytes.fromhex(data["secret"])).split("-")[0]


@pytest.fixture
def own_mailbox_pairs(processes, dbus_bus, second_bus, fresh_mailbox, transit_relay, tmp_path):
    box = fresh_mailbox()
    p = Pairs(processes, (dbus_bus.address, second_bus), box.url, transit_relay.hint, tmp_path)
    p.box = box
    yield p
    p.server.close()


# Over a minute each: outside the default run, as the other long fault tests are.
slow = pytest.mark.skipif(
    os.environ.get("FOWL_SLOW") != "1", reason="slow (1-3 minutes): run with FOWL_SLOW=1"
)


@pytest.mark.slow
@slow
def test_they_meet_despite_a_squatter_a_stale_claim_a_mailbox_restart_and_a_crash_while_waiting(
    own_mailbox_pairs: Pairs, processes
):
    pairs = own_mailbox_pairs
    alice, bob = pairs.alice, pairs.bob
    pairs.start(alice)
    pairs.start(bob)
    a_path, _ = pairs.pair()
    call(alice.bus, a_path, SESSION, "Close")
    pairs.meet_again_profiles()
    for side in (alice, bob):
        side.fowld.call("Reload")
    wait_for("both to meet", lambda: pairs.connected(alice) and pairs.connected(bob), 30)
    fetch_blob(pairs.listen_port, pairs.server.blob, 20)

    # A squatter claims the nameplate alice waits at; bob crashes (leaving a stale claim).
    squatted = standby_nameplate(alice, "to-bob")
    squatter = processes.spawn(
        [sys.executable, "-m", "harness.squatter", pairs.mailbox, squatted], name="squatter"
    )
    wait_for("the squatter's claim", lambda: "claimed" in processes.output(squatter)[0], 10)
    bob.fowld.process.kill()
    bob.fowld.process.wait(5)
    up = pairs.start(bob)
    took = fetch_blob(pairs.listen_port, pairs.server.blob, 90)
    print(f"squatter and stale claim: data again {time.monotonic() - up:.1f} s after bob's restart")
    assert took < 90
    processes.stop(squatter)

    # Bob stops; the mailbox restarts (it forgets every claim) while alice waits.
    bob.fowld.process.send_signal(signal.SIGTERM)
    assert bob.fowld.process.wait(15) == 0
    wait_for("alice to wait", lambda: (s := pairs.session(alice)) and s["State"] != "connected", 15)
    port = pairs.box.port
    pairs.box.stop()
    pairs.box = start_mailbox(processes, port=port)
    time.sleep(2)
    up = pairs.start(bob)
    fetch_blob(pairs.listen_port, pairs.server.blob, 60)
    print(f"mailbox restart: data again {time.monotonic() - up:.1f} s after bob's start")

    # Alice crashes while waiting for bob (stale claims at her meeting points), then both start.
    bob.fowld.process.send_signal(signal.SIGTERM)
    assert bob.fowld.process.wait(15) == 0
    time.sleep(1)
    alice.fowld.process.kill()
    alice.fowld.process.wait(5)
    pairs.start(alice)
    up = pairs.start(bob)
    fetch_blob(pairs.listen_port, pairs.server.blob, RESTART_TARGET + MARGIN)
    print(f"crash while waiting: data again {time.monotonic() - up:.1f} s after both started")
    reason = pairs.connected(bob)["StateReason"]
    assert reason and "unreachable" not in reason, reason


def met_pair(pairs: Pairs) -> None:
    """Start both daemons, pair them, and let their `peer:` profiles meet."""
    pairs.start(pairs.alice)
    pairs.start(pairs.bob)
    a_path, _ = pairs.pair()
    call(pairs.alice.bus, a_path, SESSION, "Close")
    pairs.meet_again_profiles()
    for side in (pairs.alice, pairs.bob):
        side.fowld.call("Reload")
    wait_for("both to meet", lambda: pairs.connected(pairs.alice) and pairs.connected(pairs.bob), 30)
    fetch_blob(pairs.listen_port, pairs.server.blob, 20)


WAKE_TARGET = 5.0  # seconds from a sleeping side's wake to data flowing (the target)


@pytest.mark.timeout(300)
@pytest.mark.slow
@slow
def test_a_side_asleep_for_two_minutes_forwards_again_soon_after_it_wakes(pairs: Pairs):
    met_pair(pairs)
    bob = pairs.bob.fowld.process
    bob.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        view = wait_for(
            "alice to notice",
            lambda: (s := pairs.session(pairs.alice)) and s["State"] != "connected" and s,
            60,
        )
        assert "peer unreachable since" in view["StateReason"], view
        time.sleep(max(0.0, 120 - (time.monotonic() - stopped)))
        assert pairs.session(pairs.alice) is not None  # nothing ends for an absent peer
    finally:
        bob.send_signal(signal.SIGCONT)
    woke = time.monotonic()
    fetch_blob(pairs.listen_port, pairs.server.blob, 30)
    took = time.monotonic() - woke
    print(f"wake to first intact transfer: {took:.1f} s")
    assert took <= WAKE_TARGET + MARGIN


def test_a_forged_or_stolen_then_forgotten_pairing_gets_nothing(pairs: Pairs, processes, tmp_path):
    import tempfile

    from harness.servers import start_dbus_bus

    met_pair(pairs)
    alice, bob = pairs.alice, pairs.bob
    stolen = (bob.pairings_dir / "to-alice.json").read_text()
    verifier = pairs.connected(alice)["Verifier"]
    with tempfile.TemporaryDirectory(prefix="fowld-bus-") as directory:
        carol = Side("carol", start_dbus_bus(processes, Path(directory)).address, tmp_path / "carol")
        write_profile(
            carol.config / "fowl/profiles", "again", pairs.join + "peer: to-alice\nautostart: true\n"
        )
        # A forged pairing: the right name and role, a secret of its own.
        forged = json.loads(stolen) | {"secret": os.urandom(32).hex()}
        carol.pairings_dir.mkdir(parents=True, mode=0o700)
        (carol.pairings_dir / "to-alice.json").write_text(json.dumps(forged))
        (carol.pairings_dir / "to-alice.json").chmod(0o600)
        pairs.start(carol)
        time.sleep(12)
        assert pairs.session(carol)["State"] != "connected"
        assert pairs.connected(alice)["Verifier"] == verifier  # alice still with bob, undisturbed

        # Stolen, then forgotten by its owners: meets nobody.
        processes.stop(carol.fowld.process)
        alice.fowld.call("Forget", "s", "to-bob")
        wait_for("bob to forget", lambda: not (bob.pairings_dir / "to-alice.json").exists(), 15)
        (carol.pairings_dir / "to-alice.json").write_text(stolen)
        pairs.start(carol)
        time.sleep(12)
        assert pairs.session(carol)["State"] != "connected"
        assert "again" not in alice.fowld.sessions() and "again" not in bob.fowld.sessions()
        processes.stop(carol.fowld.process)


def test_access_in_time_invitation_expiry_session_lifetime_and_pairing_expiry(pairs: Pairs, processes):
    alice, bob = pairs.alice, pairs.bob
    pairs.start(alice)
    pairs.start(bob)
    # An invitation nobody joins ends by itself, saying why.
    [path, _] = alice.fowld.call("InviteWith", "sa{sv}", "share", "1", "expires", "s", "2s")
    wait_for("the invitation to end", lambda: "share" not in alice.fowld.sessions(), 15)
    assert "the invitation expired: nobody joined within 2 s" in processes.output(alice.fowld.process)[1]

    # A session with a lifetime ends itself; the peer is told why.
    [a_path, code] = alice.fowld.call(
        "InviteWith", "sa{sv}", "share", "2", "lifetime", "s", "4s", "pair", "s", "to-bob"
    )
    out = gdbus_call(bob.bus, "AcceptWith", "join", code, "{'pair': <'to-alice'>, 'expires': <'6s'>}")
    b_path = out.split("'")[1]
    wait_for("bob connected", lambda: properties(bob.bus, b_path)["State"] == "connected")
    wait_for("both to end", lambda: not alice.fowld.sessions() and not bob.fowld.sessions(), 20)
    b_log, a_log = (processes.output(s.fowld.process)[1] for s in (bob, alice))
    assert "peer closed the session: its lifetime of 4 s ended" in b_log, b_log[-2000:]
    assert "the session's lifetime of 4 s ended" in a_log
    # The pairing expires on both sides at the earlier expiry (bob's 6 s).
    [a_pairing] = alice.fowld.manager()["Pairings"]
    [b_pairing] = bob.fowld.manager()["Pairings"]
    assert a_pairing["expires"] == b_pairing["expires"] > 0
    time.sleep(max(0.0, a_pairing["expires"] - time.time() + 0.5))
    pairs.meet_again_profiles()
    bob.fowld.call("Reload")  # its autostart is refused, with the reason in the log
    result = busctl(bob.bus, "call", BUS_NAME, MANAGER_PATH, MANAGER, "Start", "s", "again")
    assert result.returncode != 0 and "has expired" in result.stderr, result.stderr
    del path, a_path


def test_fowlctl_lists_and_forgets_pairings_and_reports_skipped_files(processes, dbus_bus, tmp_path):
    state = tmp_path / "state"
    store = PairingStore(state / "fowl" / "pairings")
    kept = store.store_new(
        pairing.PairingAgreed("bob", "alice", os.urandom(32), "inviter", None), "ws://m/v1"
    )
    (store.directory / "broken.json").write_text("{")
    (store.directory / "broken.json").chmod(0o600)
    fowld = start_fowld(processes, dbus_bus.address, tmp_path, XDG_STATE_HOME=str(state))
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": dbus_bus.address}

    def fowlctl(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "fowlctl", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

    listed = fowlctl("pairings")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "PEER",
        "CALLS",
        "IT",
        "CREATED",
        "LAST",
        "MET",
        "EXPIRES",
        "RUNNING",
    ]
    assert listed.stdout.splitlines()[1].split()[:2] == ["bob", "alice"]
    assert f"{store.directory / 'broken.json'}: pairing skipped" in listed.stdout
    data = json.loads(fowlctl("pairings", "--json").stdout)
    assert [p["name"] for p in data["pairings"]] == ["bob"] and data["pairings"][0]["expires"] is None
    assert kept.secret.hex() not in listed.stdout + json.dumps(data)
    assert fowlctl("forget", "bob").returncode == 0
    assert not (store.directory / "bob.json").exists()
    again = fowlctl("forget", "bob")
    assert again.returncode == 1 and "no pairing named 'bob'" in again.stderr
    wait_for("Pairings to follow", lambda: fowld.manager()["Pairings"] == [], 5)
    assert "--pair NAME" in fowlctl("invite", "--help").stdout


def test_pairing_options_and_fields_are_validated():
    from fowld.daemon.errors import InvalidArgs
    from fowld.daemon.manager import StartOptions
    from fowld.stdio.commands import CommandError, parse_command

    assert StartOptions.from_mapping({"pair": "bob", "expires": "30d", "lifetime": 7200}) == StartOptions(
        "bob", 30 * 86400.0, 7200.0
    )
    for bad in ({"pair": "a/b"}, {"expires": "soon"}, {"lifetime": "-1h"}, {"colour": "red"}):
        with pytest.raises(InvalidArgs):
            StartOptions.from_mapping(bad)
    assert parse_command('{"kind": "set-code", "code": "7-a-b", "pair": "bob"}')["pair"] == "bob"
    with pytest.raises(CommandError, match="pair"):
        parse_command('{"kind": "allocate-code", "pair": "no spaces"}')


@pytest.mark.timeout(240)
def test_the_meeting_again_benchmark_runs(tmp_path):
    out = tmp_path / "pairing.json"
    argv = [
        sys.executable,
        "-m",
        "bench.pairing",
        "--runs",
        "1",
        "--wakes",
        "1",
        "--sleep",
        "3",
        "--json",
        str(out),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=200, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["median"]) == {"kill -9", "SIGTERM", "wake"}
    assert all(0 < v < FIRST_BYTE_LIMIT for v in report["median"].values()), report


FIRST_BYTE_LIMIT = 60.0  # the benchmark's own limit per measurement
