"""Fixtures that start real servers on loopback; the machinery is in servers.py."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from fowld.wormhole import patches as compat
from harness.netns import Hub, NetnsError, Topology, remove_stale_namespaces, start_hub, unavailable_reason
from harness.servers import (
    DBusBus,
    MailboxServer,
    ProcessGroup,
    TransitRelay,
    dbus_daemon,
    start_dbus_bus,
    start_mailbox,
    start_transit_relay,
    upstream_python_path,
)

# Tests touch only loopback: every fowld (spawned or in-process) offers its peer
# only 127.0.0.1 for direct Dilation connections, never this machine's other addresses.
os.environ["FOWL_DIRECT_ADDRESSES"] = "127.0.0.1"
compat.advertise_direct_addresses(["127.0.0.1"])

# One Hypothesis profile for every fuzz test; FOWL_FUZZ_EXAMPLES scales the cases per test.
settings.register_profile(
    "fowl",
    max_examples=int(os.environ.get("FOWL_FUZZ_EXAMPLES", "200")),
    deadline=None,  # a case may wait for a process, the bus or the mailbox
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("fowl")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start processes with ``processes.spawn(argv, ...)``; all are stopped after the test."""
    group = ProcessGroup(tmp_path / "processes")
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def _session_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path_factory.mktemp("servers"))
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def mailbox(_session_processes: ProcessGroup) -> MailboxServer:
    """A mailbox server shared by the whole run (``.url``, ``.pid``)."""
    return start_mailbox(_session_processes)


@pytest.fixture
def fresh_mailbox(processes: ProcessGroup) -> Callable[..., MailboxServer]:
    """Start a mailbox of the test's own: ``fresh_mailbox(port=None)``; ``.stop()`` ends it."""
    return functools.partial(start_mailbox, processes)


@pytest.fixture(scope="session")
def transit_relay(_session_processes: ProcessGroup) -> TransitRelay:
    """A transit relay shared by the whole run (``.hint``, ``.pid``)."""
    return start_transit_relay(_session_processes)


@contextlib.contextmanager
def _private_bus(processes: ProcessGroup) -> Iterator[DBusBus]:
    if dbus_daemon() is None:
        pytest.skip("dbus-daemon is not installed (Debian package: dbus)")
    # Short directory: tmp_path can exceed the length limit of a UNIX socket path.
    with tempfile.TemporaryDirectory(prefix="fowld-bus-") as directory:
        bus = start_dbus_bus(processes, Path(directory))
        yield bus
        bus.stop()


@pytest.fixture
def dbus_bus(processes: ProcessGroup) -> Iterator[DBusBus]:
    """A private D-Bus bus for one test (``.address``, ``.pid``)."""
    with _private_bus(processes) as bus:
        yield bus


@pytest.fixture
def second_bus(processes: ProcessGroup) -> Iterator[str]:
    """The address of another private bus, for a peer daemon."""
    with _private_bus(processes) as bus:
        yield bus.address


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """The interpreter that runs upstream fowl (``$FOWL_UPSTREAM_PYTHON`` overrides)."""
    path = upstream_python_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"upstream fowl interpreter {path} not found; set FOWL_UPSTREAM_PYTHON")
    return path


@pytest.fixture
def topology() -> Iterator[Topology]:
    """Network namespaces alice, bob and hub (see netns.py), deleted afterwards."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    remove_stale_namespaces()
    try:
        topology = Topology.create()
    except NetnsError as e:
        pytest.skip(f"cannot build network namespaces here: {e}")
    try:
        yield topology
    finally:
        topology.delete()


@pytest.fixture
def hub(topology: Topology, processes: ProcessGroup) -> Hub:
    """The hub namespace with a mailbox server and a transit relay running."""
    return start_hub(topology, processes)
