"""``host_group``: the addresses counted as one host by per-host bounds (``net/hosts.py``)."""

from __future__ import annotations

import pytest

from gridnet.net.hosts import host_group

GROUPS = [
    # (address as a socket or a Host header gives it, its group)
    ("192.0.2.7", "192.0.2.7"),  # IPv4: per address
    ("192.0.2.8", "192.0.2.8"),
    ("127.0.0.1", "127.0.0.1"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # IPv6: per /64
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:a:b:c:d", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another host
    ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),  # (the zone is dropped)
    ("::1", "::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped: as the IPv4 address
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("/run/gridnet/api.sock", "/run/gridnet/api.sock"),  # no IP address: itself
    ("", ""),
]


@pytest.mark.parametrize(("address", "group"), GROUPS)
def test_a_host_is_an_ipv4_address_or_an_ipv6_64(address: str, group: str) -> None:
    assert host_group(address) == group
