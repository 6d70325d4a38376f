"""Addresses users type, as Twisted endpoint strings.

Every address in fowld is an endpoint string (``tcp:2222:interface=127.0.0.1``,
``tcp:localhost:22``, ``unix:path=/run/app.sock``). This module turns what a
user wrote into a normalised string, applies the loopback default to listeners
and builds the endpoint. A few short forms are accepted too: ``8080`` and
``[::1]:8080`` for listeners, ``22``, ``host:22`` and ``[::1]:22`` for
connections.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from twisted.internet.endpoints import _parse as _twisted_parse  # Twisted's own tokenizer
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from fowld.engine.config import LISTEN_BACKLOG

LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"
_TCP_KINDS = {"tcp", "tcp6"}
_BRACKETED = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.%a-zA-Z]+)\]:(?P<port>\d+)$")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-_]+):(?P<port>\d+)$")
_KNOWN_KINDS = ("tcp:", "tcp6:", "unix:")
# Other Twisted endpoint kinds: never mistaken for a host name in HOST:PORT.
_OTHER_KINDS = {"udp", "ssl", "tls", "tor", "onion", "stdio", "systemd", "ssh", "unix-abstract", "launchd"}


def _short_form(text: str) -> re.Match | None:
    """Match ``HOST:PORT`` or ``[V6]:PORT``, but never a ``kind:...`` endpoint string."""
    if text.lower().startswith(_KNOWN_KINDS) or text.split(":", 1)[0].lower() in _OTHER_KINDS:
        return None
    return _BRACKETED.match(text) or _HOST_PORT.match(text)


class EndpointError(ValueError):
    """An address that cannot be used, with a message saying why."""


@dataclass(frozen=True)
class Address:
    """A validated endpoint string and what callers need to know about it."""

    spec: str  # normalised Twisted endpoint string
    kind: str  # "tcp", "tcp6" or "unix"
    port: int | None  # TCP port (0 means "pick one"); None for UNIX sockets
    host: str | None = None  # listen interface or connect host
    path: str | None = None  # UNIX socket path


def escape(value: str) -> str:
    """Escape colons and equals signs for an endpoint string."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


# ``interface=::1`` / ``host=::1`` typed without escaping the colons: escape them for the user.
_BARE_V6_VALUE = re.compile(
    r"(?P<key>interface|host)=(?P<value>[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*?(?:%[A-Za-z0-9_.\-]+)?)(?=:[a-z]+=|$)"
)


def _escape_bare_ipv6(spec: str) -> str:
    return _BARE_V6_VALUE.sub(lambda m: f"{m.group('key')}={escape(m.group('value'))}", spec)


def _split(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """Split an endpoint string exactly as Twisted will: ``:`` between parts, the first
    unescaped ``=`` between key and value, backslash escaping either."""
    try:
        args, kwargs = _twisted_parse(_escape_bare_ipv6(spec))
    except RuntimeError:  # Twisted's tokenizer stops inside a trailing lone backslash
        raise EndpointError(f"{spec!r} ends in a lone backslash (escape it as \\\\)") from None
    except UnicodeError:  # Twisted wants option names in ASCII
        raise EndpointError(f"{spec!r}: option names must be plain ASCII words") from None
    kind = args[0].lower() if args else ""
    return kind, list(args[1:]), dict(kwargs)


def _port(text: str, what: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise EndpointError(f"{what}: port {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise EndpointError(f"{what}: port {port} is out of range 0-65535")
    return port


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.split("%")[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


def _extra(kwargs: dict[str, str]) -> str:
    """Options we do not interpret, passed on to Twisted in a stable order."""
    return "".join(f":{k}={escape(v)}" for k, v in sorted(kwargs.items()))


def _unix_address(kind: str, args: list[str], kwargs: dict[str, str], what: str, path_prefix: str) -> Address:
    # Twisted's UNIX server takes the path positionally; its client wants path=
    if kind != "unix":
        raise EndpointError(f"{what}: unsupported kind {kind!r} (use tcp:, tcp6: or unix:)")
    path = kwargs.pop("path", None) or (args[0] if args else None)
    if not path:
        raise EndpointError(f"{what}: expected unix:path=FILE")
    spec = f"unix:{path_prefix}{escape(path)}{_extra(kwargs)}"
    return Address(spec=spec, kind="unix", port=None, path=path)


def parse_listen(text: str | int) -> Address:
    """Validate a listen address; TCP listeners default to loopback."""
    text = str(text).strip()
    what = f"listen address {text!r}"
    if not text:
        raise EndpointError("listen address is empty")
    if text.isdigit():
        text = f"tcp:{text}"
    elif m := _short_form(text):
        host = m.group("host")
        kind = "tcp6" if _is_ipv6(host) else "tcp"
        text = f"{kind}:{m.group('port')}:interface={escape(host)}"
    kind, args, kwargs = _split(text)
    if kind in _TCP_KINDS:
        if "port" in kwargs:
            args.insert(0, kwargs.pop("port"))
        if len(args) != 1:
            raise EndpointError(f"{what}: expected tcp:PORT[:interface=ADDRESS]")
        port = _port(args[0], what)
        interface = kwargs.pop("interface", None)
        if interface == "":
            # Twisted would read an empty interface as "every interface"
            raise EndpointError(f"{what}: empty interface (name one, e.g. interface=127.0.0.1)")
        if interface is None:
            interface = LOOPBACK_V6 if kind == "tcp6" else LOOPBACK_V4
        elif _is_ipv6(interface):
            kind = "tcp6"
        spec = f"{kind}:{port}:interface={escape(interface)}{_extra(kwargs)}"
        return _checked(Address(spec=spec, kind=kind, port=port, host=interface), what, serverFromString)
    return _checked(_unix_address(kind, args, kwargs, what, path_prefix=""), what, serverFromString)


def parse_connect(text: str | int) -> Address:
    """Validate a connect address (where a service's streams end)."""
    text = str(text).strip()
    what = f"connect address {text!r}"
    if not text:
        raise EndpointError("connect address is empty")
    if text.isdigit():
        text = f"tcp:localhost:{text}"
    elif m := _short_form(text):
        text = f"tcp:host={escape(m.group('host'))}:port={m.group('port')}"
    kind, args, kwargs = _split(text)
    if kind in _TCP_KINDS:
        host = kwargs.pop("host", None)
        port_text = kwargs.pop("port", None)
        if host is None and args:
            host = args.pop(0)
        if port_text is None and args:
            port_text = args.pop(0)
        if not host or port_text is None or args:
            raise EndpointError(f"{what}: expected tcp:HOST:PORT")
        port = _port(port_text, what)
        if port == 0:
            raise EndpointError(f"{what}: port 0 cannot be connected to")
        # Twisted's "tcp" client handles IPv6 literals too; it has no "tcp6" client.
        kind = "tcp"
        spec = f"{kind}:host={escape(host)}:port={port}{_extra(kwargs)}"
        return _checked(Address(spec=spec, kind=kind, port=port, host=host), what, clientFromString)
    return _checked(_unix_address(kind, args, kwargs, what, path_prefix="path="), what, clientFromString)


def _checked(address: Address, what: str, build) -> Address:
    """``address`` once Twisted has built an endpoint from it: parsing means validating, so
    an option Twisted would refuse (``mode=zz``, ``timeout=x``) fails here, not on first use."""
    try:
        build(None, address.spec)  # building binds or connects nothing; no reactor needed
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        problem = f"unknown option {unknown.group(1)!r}" if unknown else str(e)
        raise EndpointError(f"{what}: {problem}") from None
    except (ValueError, KeyError) as e:
        raise EndpointError(f"{what}: bad option value ({e})") from None
    return address


def listen_address_for_port(port: int | None, interface: str | None = None) -> Address:
    """The listen address an upstream-style ``local`` command describes."""
    host = interface or LOOPBACK_V4
    kind = "tcp6" if _is_ipv6(host) else "tcp"
    return parse_listen(f"{kind}:{port or 0}:interface={escape(host)}")


def connect_address_for_port(port: int, host: str | None = None) -> Address:
    """The connect address an upstream-style ``remote`` command describes."""
    return parse_connect(f"tcp:host={escape(host or 'localhost')}:port={port}")


def server_endpoint(reactor, address: Address) -> IStreamServerEndpoint:
    try:
        return serverFromString(reactor, f"{address.spec}:backlog={LISTEN_BACKLOG}")
    except (ValueError, TypeError) as e:
        raise EndpointError(f"listen address {address.spec!r}: {e}") from None


def client_endpoint(reactor, address: Address) -> IStreamClientEndpoint:
    try:
        return clientFromString(reactor, address.spec)
    except (ValueError, TypeError) as e:
        raise EndpointError(f"connect address {address.spec!r}: {e}") from None
