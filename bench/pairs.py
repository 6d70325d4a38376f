"""The forwarding benchmark's daemon pairs: implementations, pairings, and opening a forward.

A ``Daemon`` is one implementation of the stdio daemon (ours, upstream's, ours
from a baseline tree); an ``Implementation`` pairs a service side with a
client side, directly or with both relay-only. ``open_forward`` starts a pair,
joins it through the mailbox and returns once a byte was echoed through it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import traffic
from harness import servers
from harness.fowld import fowld_argv
from harness.peers import StdioPeer, kind_is, start_stdio, upstream_argv

SERVICE = "bench"
STEP_TIMEOUT = 20.0  # seconds for one setup step (a code, a peer, a listener) on loopback
_FAILED_KINDS = {"error", "listening-failed", "remote-connect-failed"}


def _failed(line: dict) -> bool:
    return line.get("kind") in _FAILED_KINDS


@dataclass(frozen=True)
class Daemon:
    """One implementation of the stdio daemon: ours, upstream's, or ours from a baseline tree."""

    key: str  # ours, upstream, base
    label: str
    # (mailbox URL, relay hint or None, relay only) -> argv
    command: Callable[[str, str | None, bool], list[str]]
    has_status: bool = False  # understands {"kind": "status"}
    env: dict[str, str] | None = None  # None: this process's environment


def ours() -> Daemon:
    def command(mailbox_url: str, relay: str | None, relay_only: bool) -> list[str]:
        options = ["--relay-only"] if relay_only else []
        return fowld_argv("--stdio", "--mailbox", mailbox_url, "--transit-relay", relay or "none", *options)

    return Daemon("ours", "ours (fowld --stdio)", command, has_status=True)


def baseline(source: Path) -> Daemon:
    """Ours, from the ``fowld`` package in ``source`` (e.g. an export of an earlier commit)."""

    def command(mailbox_url: str, relay: str | None, relay_only: bool) -> list[str]:
        # -P: ``-m`` would put the working directory, this checkout, before ``source``
        return [sys.executable, "-P", *ours().command(mailbox_url, relay, relay_only)[1:]]

    environment = {**os.environ, "PYTHONPATH": str(source)}
    return Daemon("base", f"base (fowld from {source})", command, has_status=True, env=environment)


def upstream(python: Path) -> Daemon:
    def command(mailbox_url: str, relay: str | None, relay_only: bool) -> list[str]:
        return upstream_argv(python, mailbox_url, relay, relay_only)

    return Daemon("upstream", "upstream fowl 26.8 (fowld)", command)


@dataclass(frozen=True)
class Implementation:
    """What one forward runs: a service side and a client side, directly or only through the relay."""

    service: Daemon
    client: Daemon
    relay: bool = False  # both daemons relay-only: every byte crosses the transit relay

    @property
    def alike(self) -> bool:
        return self.service.key == self.client.key

    @property
    def key(self) -> str:  # also names log files: no slash
        sides = self.service.key if self.alike else f"{self.service.key}-{self.client.key}"
        return f"{sides}-relay" if self.relay else sides

    @property
    def label(self) -> str:
        if self.alike:
            sides = self.service.label
        else:
            sides = f"{self.service.key} service / {self.client.key} client"
        return f"{sides} via the relay" if self.relay else sides

    def status_side(self, forward: Forward) -> StdioPeer | None:
        """The daemon of ``forward`` to ask for its status (ours understands it), if any."""
        if self.client.has_status:
            return forward.client
        return forward.service if self.service.has_status else None


def alike(daemon: Daemon, relay: bool = False) -> Implementation:
    return Implementation(daemon, daemon, relay)


@dataclass
class Forward:
    """A running pair with the forward set up; ``address`` reaches the target through it."""

    implementation: Implementation
    service: StdioPeer
    client: StdioPeer
    address: traffic.Address
    timings: dict[str, float] = field(default_factory=dict)  # seconds after spawning
    path: str | None = None  # "direct" or "relay", when a daemon reports it or the relay shows it

    @property
    def daemons(self) -> tuple[StdioPeer, StdioPeer]:
        return self.service, self.client

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.terminate()  # both at once, then wait for each
        for daemon in self.daemons:
            daemon.stop()


def _relayed_connections(relay: servers.TransitRelay | None) -> int:
    """Connections the transit relay holds now (0 without one)."""
    if relay is None:
        return 0
    held = psutil.Process(relay.pid).net_connections("tcp")
    return sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == relay.port)


def open_forward(
    group: servers.ProcessGroup,
    implementation: Implementation,
    mailbox_url: str,
    relay: servers.TransitRelay | None,
    target_port: int,
    timeout: float = STEP_TIMEOUT,
) -> Forward:
    """Spawn a pair, pair it through the mailbox, offer ``bench`` and echo one byte through it.

    Only a relay pairing is offered the ``relay``. ``timings`` holds when each
    step was seen, in seconds after spawning; ``usable`` is when the first byte
    came back through the forward.
    """
    listen_port = servers.free_port()
    hint = relay.hint if implementation.relay and relay is not None else None
    relayed_before = _relayed_connections(relay)
    sides = (implementation.service, implementation.client)
    argv = [daemon.command(mailbox_url, hint, implementation.relay) for daemon in sides]
    start = time.monotonic()  # the clock of the lines' arrival times
    service = start_stdio(group, argv[0], f"{implementation.key}-service", sides[0].env)
    try:
        client = start_stdio(group, argv[1], f"{implementation.key}-client", sides[1].env)
    except BaseException:
        service.stop()
        raise
    forward = Forward(implementation, service, client, (servers.LOOPBACK, listen_port))

    def seen(daemon: StdioPeer, kind: str, wait: float = 0) -> float:
        return daemon.wait_seen(kind_is(kind), wait, fails=_failed).at

    try:
        client.send("local", name=SERVICE, local_listen_port=listen_port)
        service.send("remote", name=SERVICE, local_connect_port=target_port)
        service.send("allocate-code")
        allocated = service.wait_for(kind_is("code-allocated"), timeout, fails=_failed)
        client.send("set-code", code=allocated["code"])
        seen(client, "listening", timeout)
        # upstream as the service refuses streams until it has the client's answer
        seen(service, "awaiting-connect", timeout)
        traffic.first_echo(forward.address)
        usable = time.monotonic()
        steps = {
            "welcome": seen(service, "welcome"),
            "code": seen(service, "code-allocated"),
            "peer": seen(client, "peer-connected"),
            "listening": seen(client, "listening"),
            "awaiting-connect": seen(service, "awaiting-connect"),
            "usable": usable,
        }
        forward.timings = {step: at - start for step, at in steps.items()}
        asked = implementation.status_side(forward)
        if asked is not None:
            since = asked.mark()
            asked.send("status")
            forward.path = asked.wait_kind("status", timeout, since).get("path")
        elif hint is None:
            forward.path = "direct"  # no relay offered: there is no other way
        elif _relayed_connections(relay) >= relayed_before + 2:
            forward.path = "relay"  # one connection from each daemon, joined by the relay
    except BaseException:
        forward.stop()
        raise
    return forward
