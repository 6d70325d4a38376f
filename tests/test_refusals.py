"""Refusals are visible: logged, signalled on D-Bus, counted; clashes are caught at load time.

Real daemons on private buses (the helpers of test_daemon.py), real listeners.
"""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
from test_daemon import (  # noqa: F401 (fixtures)
    ERROR,
    MANAGER,
    MANAGER_PATH,
    SESSION,
    call,
    gdbus_error,
    invite_and_accept,
    monitor,
    pair_setup,
    properties,
    start_fowld,
    try_properties,
)

from fowld.daemon.profiles import load_profiles
from fowld.engine.config import LISTEN_BACKLOG
from harness.fowld import write_profile
from harness.wait import until

pytestmark = pytest.mark.timeout(90)


def wait_for(what: str, check, timeout: float = 20.0):
    return until(check, what, timeout, 0.1)


def test_a_listener_that_cannot_bind_and_a_refused_stream_are_visible(
    pair_setup, processes, second_bus  # noqa: F811 (a fixture of test_daemon)
):
    blocker = socket.create_server(("127.0.0.1", pair_setup.listen_port))  # "Address already in use"
    a, b = pair_setup.start()
    seen = monitor(processes, second_bus)
    pair = invite_and_accept(a, b, pair_setup.listen_port)

    def client_reasons() -> list:
        return properties(b.bus, pair.b_path)["ClientReasons"]

    failed = wait_for("the listener's failure", lambda: [r for n, r in client_reasons() if n == "blob" and r])
    assert "Address already in use" in failed[0], failed
    assert properties(b.bus, pair.b_path)["Clients"][0][3] == "failed"
    wait_for("a log line", lambda: "client 'blob': cannot listen" in processes.output(b.process)[1], 5)

    blocker.close()  # the peer asks again (backing off): the listener comes up, the reason goes
    wait_for("the listener", lambda: properties(b.bus, pair.b_path)["Clients"][0][3] == "listening", 30)
    assert client_reasons() == [["blob", ""]]

    pair_setup.server.close()  # the service is gone: the peer refuses the stream
    with socket.create_connection(("127.0.0.1", pair_setup.listen_port), timeout=10) as sock:
        with pytest.raises(ConnectionResetError):  # reset: a refusal never looks like a served stream
            sock.recv(1)
    for fowld, path in ((a, pair.a_path), (b, pair.b_path)):
        wait_for("the count", lambda f=fowld, p=path: properties(f.bus, p)["RefusedConnections"] == 1, 5)
    signal = r"Session\.ConnectionRefused \('blob', '[^']+'\)"
    wait_for("ConnectionRefused", lambda: re.search(signal, seen()), 5)
    for fowld in (a, b):
        wait_for("a log line", lambda f=fowld: "refused a 'blob' stream" in processes.output(f.process)[1], 5)
    assert properties(b.bus, pair.b_path)["LostConnections"] == 0
    call(b.bus, pair.b_path, SESSION, "Close")


def test_two_profiles_listening_on_one_address_are_reported_at_load_time(tmp_path):
    client = "clients:\n  - name: web\n    listen: tcp:8080\n"
    (tmp_path / "first.yaml").write_text(client)
    (tmp_path / "second.yaml").write_text(client)
    (tmp_path / "random.yaml").write_text("clients:\n  - name: web\n    listen: tcp:0\n")
    (tmp_path / "third.yaml").write_text("clients:\n  - name: web\n    listen: tcp:8081\n")
    found = load_profiles(tmp_path)
    assert sorted(found.profiles) == ["first", "random", "third"]
    (error,) = found.errors
    assert error.source.endswith("second.yaml")
    assert "clients[0].listen: 'tcp:8080:interface=127.0.0.1' is used by profile 'first' too" in str(error)


def test_listeners_queue_a_burst(connected):
    a, b = connected()
    a.send("remote", name="burst", local_connect_port=9)
    b.send("local", name="burst")
    port = b.wait_kind("listening", name="burst")["listening_port"]
    listing = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True)
    backlog = int(listing.stdout.split()[2])  # Send-Q of a listening socket: its backlog
    with open("/proc/sys/net/core/somaxconn") as f:
        assert backlog == min(LISTEN_BACKLOG, int(f.read())) > 50, listing.stdout


def test_invitations_are_bounded_and_expire(processes, dbus_bus, mailbox, tmp_path):
    profile = f"mailbox: {mailbox.url}\nservices:\n  - {{name: web, connect: 8080}}\n"
    for name in ("one", "two"):
        write_profile(tmp_path / "fowl/profiles", name, profile)
    args = ("--max-invites", "3", "--max-invites-per-profile", "2", "--invite-expiry", "4")
    fowld = start_fowld(processes, dbus_bus.address, tmp_path, args)
    paths = [fowld.call("Invite", "s", "one")[0] for _ in range(2)]
    name, message = gdbus_error(dbus_bus.address, MANAGER_PATH, f"{MANAGER}.Invite", "one")
    assert name == ERROR + "Failed" and "2 invitations of profile 'one'" in message, message
    assert "--max-invites-per-profile" in message
    paths.append(fowld.call("Invite", "s", "two")[0])
    name, message = gdbus_error(dbus_bus.address, MANAGER_PATH, f"{MANAGER}.Invite", "two")
    assert "3 invitations are waiting" in message and "(limit 3, --max-invites)" in message, message
    wait_for("the invitations to expire", lambda: fowld.manager()["Sessions"] == [], 20)
    assert all(try_properties(dbus_bus.address, path) is None for path in paths)
    log = processes.output(fowld.process)[1]
    assert "invitation expired: nobody joined within 4 s" in log, log[-2000:]
    fowld.call("Invite", "s", "one")  # room again
