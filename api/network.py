"""Which network a client address belongs to: one rule for the quotas
(:func:`api.policy.network_of`), the login and sign-up limits
(:func:`api.ratelimit.client_key`) and the scan log
(:func:`api.scans.network_prefix`), each with its own prefix lengths."""

from __future__ import annotations

import ipaddress


def ip_prefix(host: str | None, v4_bits: int, v6_bits: int) -> str | None:
    """``host``'s network cut to ``v4_bits`` (IPv4, an IPv4-mapped IPv6
    address included) or ``v6_bits`` (IPv6), as CIDR text; a single address
    (a full-length prefix) as the address alone. None when ``host`` is not an
    IP address (a test client, a Unix socket, nothing)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    network = ipaddress.ip_network((address, v4_bits if address.version == 4 else v6_bits), strict=False)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
