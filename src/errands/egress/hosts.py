"""Hosts a sandbox may open a tunnel to (HTTP CONNECT, or plain HTTP through the proxy): the
package registries a project's setup commands install from.

A host is named with its port (``pypi.org:443``). What it resolves to is checked when the
tunnel opens, and the connection goes to exactly the address that was checked (no second
lookup a rebinding DNS server could answer differently): a name that resolves to this
machine, the local network or link-local addresses (cloud metadata) is refused, because a
project's list is written by its members while the server's database, Redis and metadata
endpoint belong to everyone. The operator may allow such a host (a registry mirror on the
LAN, a test server on loopback) with ``ERRANDS_EGRESS_PRIVATE_HOSTS``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from errands.errors import ConfigError, InvalidInput
from errands.settings import DEFAULT_SETUP_HOSTS, Settings

__all__ = [
    "DEFAULT_SETUP_HOSTS",
    "HostPort",
    "Unreachable",
    "parse_host",
    "parse_hosts",
    "private_hosts",
    "resolve",
]


_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
)


@dataclass(frozen=True, order=True)
class HostPort:
    host: str  # lower-case name or IP address (IPv6 without brackets)
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host(text: str, *, default_port: int | None = None) -> HostPort:
    """``host:port`` (``[v6]:port``) as a HostPort, or InvalidInput saying what is wrong."""
    value = text.strip()
    host, port_text = value, ""
    if value.startswith("["):
        host, _, tail = value[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else tail
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    if not port_text and default_port is not None:
        port_text = str(default_port)
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(f"{text!r} is not host:port (e.g. pypi.org:443).")
    host = host.lower().rstrip(".")
    if not (_is_ip(host) or _NAME.fullmatch(host)):
        raise InvalidInput(f"{text!r} does not name a host.")
    return HostPort(host, int(port_text))


def parse_hosts(values: list[str] | tuple[str, ...]) -> tuple[HostPort, ...]:
    return tuple(sorted({parse_host(value) for value in values}))


def private_hosts(settings: Settings) -> tuple[HostPort, ...]:
    """The operator's ERRANDS_EGRESS_PRIVATE_HOSTS."""
    try:
        return parse_hosts(settings.egress_private_hosts)
    except InvalidInput as exc:
        raise ConfigError(f"ERRANDS_EGRESS_PRIVATE_HOSTS: {exc.message}") from exc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


class Unreachable(Exception):
    """A tunnel's host that may not, or cannot, be reached; the message says which."""


def resolve(target: HostPort, *, private_ok: bool) -> list[tuple[int, str]]:
    """The addresses to connect to for ``target`` (family, address), every one of them public
    unless ``private_ok``. Blocking: call it from a thread."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unreachable(f"{target.host} does not resolve ({exc})") from exc
    found = [(int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
    if not private_ok:
        private = sorted({address for _, address in found if not is_public(address)})
        if private:
            raise Unreachable(
                f"{target.host} resolves to a non-public address ({', '.join(private)}); "
                "only the operator can allow that (ERRANDS_EGRESS_PRIVATE_HOSTS)"
            )
    return found
