"""Anonymous visitors, counted the way privacy-respecting analytics count them.

A visitor id is a keyed hash of site + client address + user agent, keyed with a random salt that
is replaced at every UTC midnight: the same visitor has one id for a day and another the next day,
and since a day's salt is destroyed when the day is over, an id can be neither followed across
days nor reversed (the address space is small enough to brute-force an unsalted hash, or one whose
salt is kept). The collector's salt of the day is shared by all its processes and hosts through
PostgreSQL (``salts.py``); without a salt source (the middleware in a user's own app), each process
makes its own, so a visitor reaching two such processes on one day counts as two.

The client address comes from the connection, or from ``X-Forwarded-For`` only when the connection
comes from a trusted proxy (``FOOTPRINT_TRUSTED_PROXIES``): anyone can send that header.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime


class VisitorIds:
    """Daily-salted visitor ids; the salt of a day is forgotten when the next day starts.

    ``salts``: where a day's salt comes from (``SharedSalts.salt_for``); by default this process
    makes its own."""

    def __init__(self, site: str, salts: Callable[[date], bytes] | None = None) -> None:
        self.site = site.encode("utf-8", "replace")
        self._salts = salts
        self._day: date | None = None
        self._salt = b""
        self._lock = threading.Lock()

    def _salt_for(self, day: date) -> bytes:
        if self._salts is not None:
            return self._salts(day)
        with self._lock:
            if day != self._day:
                self._day, self._salt = day, os.urandom(32)  # the previous day's salt is gone
            return self._salt

    def visitor_id(self, client: str, user_agent: str, now: datetime | None = None) -> str:
        day = (now or datetime.now(UTC)).astimezone(UTC).date()
        h = hashlib.blake2b(key=self._salt_for(day), digest_size=10)
        for part in (self.site, client.encode("utf-8", "replace"), user_agent.encode("utf-8", "replace")):
            h.update(len(part).to_bytes(4, "big"))  # unambiguous: ("ab", "c") != ("a", "bc")
            h.update(part)
        return h.hexdigest()


def parse_networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``"127.0.0.1, 10.0.0.0/8"`` -> networks; ``ValueError`` names a bad entry."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"not an address or network: {part!r}") from None
    return out


def client_address(peer: str, forwarded_for: str | None,
                   trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
    address of ``X-Forwarded-For`` that is not itself a trusted proxy (left of it, anyone can write)."""
    if not forwarded_for or not in_networks(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop if _is_address(hop) else peer
    return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def in_networks(addr: str, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """``addr`` is an address inside one of ``trusted`` (a name or garbage is not)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)
