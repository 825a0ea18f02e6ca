"""Which addresses one host holds: the unit that per-host bounds count in (the API's
connections; peers' links, handshakes and the serving budget, ``net/tcp.py``).

An IPv4 host usually has one address. An IPv6 host is routinely given a whole /64 (a home's
LAN, a cloud instance's prefix, SLAAC privacy addresses) and may connect from any of its
2^64 addresses, so a bound per exact address would not bound it at all: its /64 is its group.
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPV6_HOST_PREFIX: Final = 64
"""Length of the IPv6 prefix one host is taken to hold [bits]."""


def host_group(address: str) -> str:
    """The addresses counted as one host with ``address``, as text: an IPv4 address itself
    (``"192.0.2.7"``); an IPv6 address its /64 (``"2001:db8:1:2::/64"``, its zone dropped);
    an IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, how a dual-stack socket shows an IPv4
    client) as that IPv4 address. Brackets around an IPv6 address are allowed; what is no IP
    address (a Unix socket's path, a name) is a group of its own, returned unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    prefix = int(ip) >> (128 - IPV6_HOST_PREFIX) << (128 - IPV6_HOST_PREFIX)
    return str(ipaddress.IPv6Network((prefix, IPV6_HOST_PREFIX)))
