"""`host:port` addresses of services, checked the same way wherever a user writes one.

A config, a flag or a line of `rollout.addresses_file` that is not an address is refused when it is
read, saying what is wrong with it, instead of failing as a connection that never comes up.
"""

from __future__ import annotations


class AddressError(ValueError):
    """Not a `host:port`; the message says what is wrong with it."""


def parse_address(text: str) -> str:
    """Validate `host:port` (or `[ipv6]:port`) and return it stripped; AddressError says why not."""
    address = text.strip()
    if not address:
        raise AddressError("empty address")
    if "://" in address:
        raise AddressError(f"{address!r} has a URL scheme; write only host:port")
    if any(c.isspace() for c in address) or "/" in address:
        raise AddressError(f"{address!r} contains spaces or '/'; write only host:port")
    host, sep, port = address.rpartition(":")
    if not sep:
        raise AddressError(f"{address!r} has no ':port'")
    if not host:
        raise AddressError(f"{address!r} has no host before ':{port}'")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise AddressError(f"{address!r}: an IPv6 host must be in brackets, e.g. [::1]:50052")
    elif ":" in host:
        raise AddressError(f"{address!r}: put an IPv6 host in brackets, e.g. [::1]:50052")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AddressError(f"{address!r}: port {port!r} is not a number in 1..65535")
    return address


def parse_addresses(texts: list[str]) -> list[str]:
    """`parse_address` of each (a pydantic validator's body: AddressError is a ValueError)."""
    return [parse_address(text) for text in texts]
