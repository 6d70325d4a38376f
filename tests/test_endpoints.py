"""Addresses users type (fowld/endpoints.py): short forms, loopback defaults, bad input.

Every listener binds loopback unless the user names an interface; every bad
address is an ``EndpointError`` with a message, never another exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint

from fowld.engine.endpoints import (
    Address,
    EndpointError,
    client_endpoint,
    connect_address_for_port,
    escape,
    listen_address_for_port,
    parse_connect,
    parse_listen,
    server_endpoint,
)
from harness.wait import get_reactor

# --- listen addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec", "host", "port"),
    [
        ("8080", "tcp:8080:interface=127.0.0.1", "127.0.0.1", 8080),
        (8080, "tcp:8080:interface=127.0.0.1", "127.0.0.1", 8080),
        ("tcp:0", "tcp:0:interface=127.0.0.1", "127.0.0.1", 0),
        ("tcp:port=22", "tcp:22:interface=127.0.0.1", "127.0.0.1", 22),
        ("TCP:22", "tcp:22:interface=127.0.0.1", "127.0.0.1", 22),
        (" tcp:22 ", "tcp:22:interface=127.0.0.1", "127.0.0.1", 22),
        ("tcp6:22", r"tcp6:22:interface=\:\:1", "::1", 22),
        ("[::1]:22", r"tcp6:22:interface=\:\:1", "::1", 22),
        ("tcp:22:interface=::1", r"tcp6:22:interface=\:\:1", "::1", 22),
        (r"tcp:22:interface=\:\:1", r"tcp6:22:interface=\:\:1", "::1", 22),
        ("0.0.0.0:22", "tcp:22:interface=0.0.0.0", "0.0.0.0", 22),
        ("localhost:22", "tcp:22:interface=localhost", "localhost", 22),
        ("tcp:22:backlog=5", "tcp:22:interface=127.0.0.1:backlog=5", "127.0.0.1", 22),
    ],
)
def test_parse_listen_normalises(text, spec, host, port):
    address = parse_listen(text)
    assert (address.spec, address.host, address.port) == (spec, host, port)
    assert parse_listen(address.spec) == address


def test_parse_listen_unix():
    address = parse_listen("unix:path=/run/app.sock:mode=600")
    assert address == Address("unix:/run/app.sock:mode=600", "unix", None, path="/run/app.sock")
    assert parse_listen("unix:/run/app.sock").path == "/run/app.sock"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "listen address is empty"),
        ("   ", "listen address is empty"),
        ("tcp:", "port '' is not a number"),
        ("tcp:http", "port 'http' is not a number"),
        ("tcp:65536", "out of range"),
        ("tcp:-1", "out of range"),
        ("70000", "out of range"),
        ("tcp:1:2", "expected tcp:PORT"),
        ("tcp:22:port=23", "expected tcp:PORT"),
        ("unix:", "expected unix:path=FILE"),
        ("unix:path=", "expected unix:path=FILE"),
        ("udp:53", "unsupported kind 'udp'"),
        ("ssl:443", "unsupported kind 'ssl'"),
        ("host:port", "unsupported kind 'host'"),
    ],
)
def test_parse_listen_refuses(text, problem):
    with pytest.raises(EndpointError, match=problem):
        parse_listen(text)


def test_an_empty_interface_is_not_every_interface():
    """``interface=`` with nothing after it would bind all interfaces; it must be refused."""
    with pytest.raises(EndpointError):
        parse_listen("tcp:2222:interface=")


def test_a_scoped_ipv6_interface_typed_without_escapes():
    address = parse_listen("tcp:22:interface=fe80::1%lo")
    assert (address.kind, address.host) == ("tcp6", "fe80::1%lo")


def test_an_escaped_equals_sign_in_a_unix_path():
    """The normalised spec escapes "=", and must read back as the same path."""
    address = parse_listen("unix:path=/run/a=b.sock")
    assert address.path == "/run/a=b.sock"
    assert parse_listen(address.spec).path == "/run/a=b.sock"


@pytest.mark.parametrize(
    ("port", "interface", "spec"),
    [
        (None, None, "tcp:0:interface=127.0.0.1"),
        (2222, None, "tcp:2222:interface=127.0.0.1"),
        (2222, "", "tcp:2222:interface=127.0.0.1"),
        (2222, "::1", r"tcp6:2222:interface=\:\:1"),
        (2222, "192.0.2.1", "tcp:2222:interface=192.0.2.1"),
    ],
)
def test_listen_address_for_port(port, interface, spec):
    assert listen_address_for_port(port, interface).spec == spec


def test_server_endpoints_are_the_kind_parsed():
    reactor = get_reactor()
    assert isinstance(server_endpoint(reactor, parse_listen("tcp:0")), TCP4ServerEndpoint)
    assert isinstance(server_endpoint(reactor, parse_listen("tcp6:0")), TCP6ServerEndpoint)
    assert isinstance(server_endpoint(reactor, parse_listen("unix:/run/x.sock")), UNIXServerEndpoint)
    with pytest.raises(EndpointError, match="backlog"):
        server_endpoint(reactor, parse_listen("tcp:0:backlog=many"))
    with pytest.raises(EndpointError, match="listen address"):
        server_endpoint(reactor, parse_listen("tcp:0:colour=blue"))


# --- connect addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec", "host", "port"),
    [
        ("22", "tcp:host=localhost:port=22", "localhost", 22),
        (22, "tcp:host=localhost:port=22", "localhost", 22),
        ("example.org:443", "tcp:host=example.org:port=443", "example.org", 443),
        ("[::1]:22", r"tcp:host=\:\:1:port=22", "::1", 22),
        ("tcp:localhost:22", "tcp:host=localhost:port=22", "localhost", 22),
        ("tcp:host=::1:port=22", r"tcp:host=\:\:1:port=22", "::1", 22),
        ("tcp6:host=::1:port=22", r"tcp:host=\:\:1:port=22", "::1", 22),
        ("tcp:localhost:22:timeout=5", "tcp:host=localhost:port=22:timeout=5", "localhost", 22),
    ],
)
def test_parse_connect_normalises(text, spec, host, port):
    address = parse_connect(text)
    assert (address.spec, address.host, address.port) == (spec, host, port)
    assert parse_connect(address.spec) == address


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "connect address is empty"),
        ("0", "port 0 cannot be connected to"),
        ("tcp:localhost:0", "port 0 cannot be connected to"),
        ("tcp:localhost", "expected tcp:HOST:PORT"),
        ("tcp:host=:port=22", "expected tcp:HOST:PORT"),
        ("tcp:a:1:extra", "expected tcp:HOST:PORT"),
        ("tcp:localhost:ssh", "port 'ssh' is not a number"),
        ("tcp:localhost:99999", "out of range"),
        ("unix:", "expected unix:path=FILE"),
        ("udp:localhost:53", "unsupported kind 'udp'"),
    ],
)
def test_parse_connect_refuses(text, problem):
    with pytest.raises(EndpointError, match=problem):
        parse_connect(text)


def test_connect_address_for_port():
    assert connect_address_for_port(22).spec == "tcp:host=localhost:port=22"
    assert connect_address_for_port(22, "::1").spec == r"tcp:host=\:\:1:port=22"
    with pytest.raises(EndpointError, match="out of range"):
        connect_address_for_port(70000)


def test_client_endpoint_reports_bad_options():
    reactor = get_reactor()
    assert client_endpoint(reactor, parse_connect("unix:/run/x.sock")) is not None
    with pytest.raises(EndpointError, match="timeout"):
        client_endpoint(reactor, parse_connect("tcp:localhost:22:timeout=soon"))


def test_escape():
    assert escape(r"a:b=c\d") == r"a\:b\=c\\d"


# --- properties ----------------------------------------------------------------------------

_ALPHABET = "tcpunix6:=\\[]%.0123456789abcdefhost=interface=path=port=/ "
_TEXTS = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(_ALPHABET), max_size=40),
    st.builds(
        str.__add__,
        st.sampled_from(["tcp:", "tcp6:", "unix:", "tcp:host=", "tcp:22:interface=", "unix:path=", "["]),
        st.text(max_size=30) | st.text(alphabet=st.sampled_from(_ALPHABET), max_size=30),
    ),
)


@given(_TEXTS)
def test_addresses_fail_only_with_endpoint_errors(text):
    reactor = get_reactor()
    for parse, build in ((parse_listen, server_endpoint), (parse_connect, client_endpoint)):
        try:
            address = parse(text)
        except EndpointError as e:
            assert str(e)
            continue
        assert address.kind in ("tcp", "tcp6", "unix")
        try:
            build(reactor, address)
        except EndpointError as e:
            assert str(e)


_HOSTS = st.sampled_from(["127.0.0.1", "::1", "localhost", "192.0.2.7", "fe80::1", "host-1.example"])
_PATHS = st.text(alphabet=st.sampled_from("abcXYZ019._-/"), min_size=1, max_size=30).map(lambda p: "/" + p)


@given(st.integers(0, 65535), st.none() | _HOSTS, _PATHS)
def test_normalised_listen_addresses_read_back_the_same(port, host, path):
    tcp = parse_listen(f"tcp:{port}" + (f":interface={escape(host)}" if host else ""))
    assert parse_listen(tcp.spec) == tcp
    assert tcp.host == (host or "127.0.0.1")
    unix = parse_listen(f"unix:path={path}")
    assert parse_listen(unix.spec) == unix and unix.path == path


@given(st.integers(0, 65535), st.sampled_from(["", "tcp:", "tcp6:", "tcp:port="]))
def test_listeners_without_an_interface_bind_loopback(port, prefix):
    address = parse_listen(f"{prefix}{port}")
    assert address.host == ("::1" if prefix == "tcp6:" else "127.0.0.1")


@given(st.integers(1, 65535), _HOSTS)
def test_normalised_connect_addresses_read_back_the_same(port, host):
    address = parse_connect(f"tcp:host={escape(host)}:port={port}")
    assert (address.host, address.port) == (host, port)
    assert parse_connect(address.spec) == address
