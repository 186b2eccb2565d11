"""The country of an inbound event, resolved at the collector before the client address is dropped.

In this order: the country the event names itself (Segment's ``context.location.country``, a two-letter
ISO 3166-1 code; ``enrich.declared_country``), else the country of the address the event names
(``context.ip``, as a server sending for its visitors does: the kit's own middleware does), else the
country of the address the request came from (after the trusted proxies, ``visitors.client_address``).
The address is looked up in the legacy GeoIP country databases (``geoip.py``; by default Debian's
``geoip-database``: ``FOOTPRINT_GEOIP_DATABASE`` and ``FOOTPRINT_GEOIP_DATABASE_V6``) and never stored.
The stored country is an ISO 3166-1 alpha-2 code, or ``""`` when it is not known: a private or unknown
address, the legacy database's pseudo-codes (anonymous proxy, satellite, "Europe", "Asia/Pacific"), or a
database that is missing (the collector's ``/healthz`` and ``GET /v1/whoami`` say so; events never fail).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from footprint.enrich import enrich
from footprint.geoip import CountryDatabase, GeoIPError

# the legacy databases' answers that are no country: not found, Asia/Pacific, Europe, anonymous proxy,
# satellite provider, other
NOT_COUNTRIES = frozenset({"--", "AP", "EU", "A1", "A2", "O1"})
CACHED_ADDRESSES = 65536  # lookups kept (a site's visitors repeat their addresses)
Enrich = Callable[[Mapping[str, Any]], dict[str, Any]]


class Countries:
    """The IPv4 and IPv6 databases, opened once; either may be missing (its addresses: ``""``)."""

    def __init__(self, ipv4_path: str, ipv6_path: str) -> None:
        self.paths = {4: ipv4_path, 6: ipv6_path}
        self.databases: dict[int, CountryDatabase] = {}
        self.errors: dict[int, str] = {}
        for version, path in self.paths.items():
            if not path:
                self.errors[version] = f"off (no IPv{version} database set)"
                continue
            try:
                self.databases[version] = CountryDatabase(path, version)
            except GeoIPError as exc:
                self.errors[version] = str(exc)
        self.country = lru_cache(maxsize=CACHED_ADDRESSES)(self._country)

    def _country(self, address: str) -> str:
        """The ISO 3166-1 alpha-2 code of ``address`` (IPv4 or IPv6 text), ``""`` when not known."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return ""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d: an IPv4 client of a dual-stack socket
        database = self.databases.get(ip.version)
        if database is None:
            return ""
        code = database.code(int(ip))
        return "" if code in NOT_COUNTRIES else code

    def problem(self) -> str | None:
        """Why some addresses get no country (a database missing or refused), or None."""
        return "; ".join(f"IPv{v}: {e}" for v, e in sorted(self.errors.items())) or None

    def describe(self) -> dict[str, Any]:
        """Each database: its path, whether it is loaded, its info text and build date, or why not."""
        out = {}
        for version, path in self.paths.items():
            db = self.databases.get(version)
            out[f"ipv{version}"] = ({"path": path, "loaded": True, "info": db.info, "built": db.built} if db else
                                    {"path": path, "loaded": False, "error": self.errors[version]})
        return out

    def close(self) -> None:
        for db in self.databases.values():
            db.close()


def address_of(context: Mapping[str, Any], client: str) -> str:
    """The address an event's country is looked up for: ``context.ip`` when it is an address, else ``client``."""
    named = context.get("ip")
    if isinstance(named, str) and len(named) <= 64:
        try:
            ipaddress.ip_address(named)
            return named
        except ValueError:
            pass
    return client


def located(countries: Countries, client: str) -> Enrich:
    """``enrich`` for one request from ``client``: the context's columns, and the country as above."""
    def run(context: Mapping[str, Any]) -> dict[str, Any]:
        out = enrich(context)
        if not out["country"]:
            out["country"] = countries.country(address_of(context, client))
        return out
    return run
