"""The legacy GeoIP country reader (``geoip.py``) and the country rules (``countries.py``) against Debian's
``geoip-database`` (2019-12-24 data): libGeoIP itself (Debian's ``libgeoip1``, through ctypes) and an
independent walk of the tree are the references; known addresses of the 2019 data; missing and foreign files.
Skipped, saying so, where the package is not installed (``apt-get install geoip-database geoip-bin``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import itertools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footprint.countries import NOT_COUNTRIES, Countries, address_of, located
from footprint.enrich import declared_country
from footprint.geoip import COUNTRY_BEGIN, NODE_BYTES, RECORD_BYTES, CountryDatabase, GeoIPError

V4 = Path("/usr/share/GeoIP/GeoIP.dat")
V6 = Path("/usr/share/GeoIP/GeoIPv6.dat")
needs_database = pytest.mark.skipif(not (V4.exists() and V6.exists()),
                                    reason="Debian's geoip-database is not installed (apt-get install geoip-database)")


class LibGeoIP:
    """libGeoIP's own lookups (the C library Debian's geoiplookup uses), for comparison."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("GeoIP") or "libGeoIP.so.1"
        self.lib = ctypes.CDLL(name)
        self.lib.GeoIP_open.restype = ctypes.c_void_p
        self.lib.GeoIP_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for fn in ("GeoIP_country_code_by_addr", "GeoIP_country_code_by_addr_v6"):
            getattr(self.lib, fn).restype = ctypes.c_char_p
            getattr(self.lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.v4 = self.lib.GeoIP_open(str(V4).encode(), 0)
        self.v6 = self.lib.GeoIP_open(str(V6).encode(), 0)

    def code(self, address: str) -> str:
        if ":" in address:
            out = self.lib.GeoIP_country_code_by_addr_v6(self.v6, address.encode())
        else:
            out = self.lib.GeoIP_country_code_by_addr(self.v4, address.encode())
        return out.decode() if out else "--"


@pytest.fixture(scope="module")
def libgeoip() -> LibGeoIP:
    try:
        return LibGeoIP()
    except OSError:
        pytest.skip("libGeoIP (Debian's libgeoip1, with geoip-bin) is not installed")


@pytest.fixture(scope="module")
def countries() -> Iterator[Countries]:
    c = Countries(str(V4), str(V6))
    yield c
    c.close()


def reference_ranges(path: Path, bits: int) -> list[tuple[int, int, str]]:
    """Every range of the tree as ``(first, last, code index)``, by a plain walk of the file (independent
    of the reader: its own reading of the format)."""
    from footprint.geoip import CODES

    data = path.read_bytes()
    out = []
    stack = [(0, 0, 0)]
    while stack:
        node, prefix, depth = stack.pop()
        for bit in (0, 1):
            start = node * NODE_BYTES + bit * RECORD_BYTES
            record = int.from_bytes(data[start:start + RECORD_BYTES], "little")
            value = prefix | bit << (bits - 1 - depth)
            if record >= COUNTRY_BEGIN:
                span = 1 << (bits - 1 - depth)
                out.append((value, value + span - 1, CODES[record - COUNTRY_BEGIN]))
            else:
                stack.append((record, value, depth + 1))
    return sorted(out)


@pytest.fixture(scope="module")
def v4_ranges() -> list[tuple[int, int, str]]:
    return reference_ranges(V4, 32)


@needs_database
def test_the_ranges_cover_the_whole_ipv4_space_once(v4_ranges: list[tuple[int, int, str]]) -> None:
    assert v4_ranges[0][0] == 0 and v4_ranges[-1][1] == 2**32 - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(v4_ranges))
    assert len(v4_ranges) > 100_000


@needs_database
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_every_range_answers_its_code_at_both_ends_as_libgeoip_does(
        data: st.DataObject, v4_ranges: list[tuple[int, int, str]], libgeoip: LibGeoIP) -> None:
    db = CountryDatabase(V4, 4)
    first, last, code = v4_ranges[data.draw(st.integers(0, len(v4_ranges) - 1), label="range")]
    inside = data.draw(st.integers(first, last), label="address")
    for number in (first, last, inside):
        assert db.code(number) == code == libgeoip.code(str(ipaddress.IPv4Address(number)))


@needs_database
@settings(max_examples=400, deadline=None)
@given(number=st.integers(0, 2**32 - 1))
def test_any_ipv4_address_as_libgeoip(number: int, libgeoip: LibGeoIP, countries: Countries) -> None:
    address = str(ipaddress.IPv4Address(number))
    expected = libgeoip.code(address)
    assert countries.databases[4].code(number) == expected
    assert countries.country(address) == ("" if expected in NOT_COUNTRIES else expected)
    assert countries.country(f"::ffff:{address}") == countries.country(address)  # a dual-stack socket's form


@needs_database
@settings(max_examples=400, deadline=None)
@given(number=st.integers(0x2000 << 112, (0x4000 << 112) - 1) | st.integers(0, 2**128 - 1))
def test_any_ipv6_address_as_libgeoip(number: int, libgeoip: LibGeoIP, countries: Countries) -> None:
    address = ipaddress.IPv6Address(number)
    if address.ipv4_mapped is not None:
        return  # looked up in the IPv4 database (above)
    assert countries.databases[6].code(number) == libgeoip.code(str(address))


@needs_database
@pytest.mark.parametrize(("address", "country"), [
    ("8.8.8.8", "US"), ("81.2.69.160", "GB"), ("193.99.144.80", "DE"), ("2001:4860:4860::8888", "US"),
    ("2a00:1450:4001:80b::200e", "DE"), ("::ffff:81.2.69.160", "GB"),
    ("10.0.0.1", ""), ("127.0.0.1", ""), ("192.168.1.1", ""), ("::1", ""), ("fe80::1", ""), ("not an address", ""),
])
def test_known_addresses_of_the_2019_data(address: str, country: str, countries: Countries) -> None:
    assert countries.country(address) == country


@needs_database
def test_geoiplookup_agrees_on_known_addresses(countries: Countries) -> None:
    if shutil.which("geoiplookup") is None:
        pytest.skip("geoiplookup (Debian's geoip-bin) is not installed")
    for address in ("8.8.8.8", "81.2.69.160", "193.99.144.80"):
        out = subprocess.run(["geoiplookup", "-f", str(V4), address], capture_output=True, text=True,
                             check=True).stdout
        assert out.split(": ", 1)[1].startswith(countries.country(address) + ",")


@needs_database
def test_the_databases_info_and_build_date(countries: Countries) -> None:
    described = countries.describe()
    assert described["ipv4"]["loaded"] and described["ipv4"]["info"].startswith("GEO-106FREE")
    assert described["ipv4"]["built"][:2] == "20" and len(described["ipv4"]["built"]) == 10
    assert countries.problem() is None


def test_a_missing_or_foreign_database_answers_no_country_and_says_why(tmp_path: Path) -> None:
    foreign = tmp_path / "city.dat"
    foreign.write_bytes(b"\x00" * 600 + b"\xff\xff\xff\x02")  # a City edition's type byte
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(GeoIPError, match="not the IPv4 country edition"):
        CountryDatabase(foreign, 4)
    c = Countries(str(tmp_path / "missing.dat"), str(empty))
    assert c.country("8.8.8.8") == "" and c.country("2001:4860:4860::8888") == ""
    problem = c.problem() or ""
    assert "IPv4: " in problem and "missing.dat" in problem and "IPv6: " in problem and "empty.dat" in problem
    assert c.describe()["ipv4"] == {"path": str(tmp_path / "missing.dat"), "loaded": False,
                                    "error": c.errors[4]}
    off = Countries("", "")
    assert off.country("8.8.8.8") == "" and "off" in (off.problem() or "")


def test_a_damaged_tree_answers_not_found_rather_than_a_wrong_country(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.dat"
    # node 0 points at node 1000 for both bits: outside the file
    damaged.write_bytes((1000).to_bytes(3, "little") * 2 + b"\x00" * 10)
    assert CountryDatabase(damaged, 4).code(0x08080808) == "--"


@needs_database
def test_the_country_an_event_names_comes_first_then_its_ip_then_the_client(countries: Countries) -> None:
    enrich = located(countries, "81.2.69.160")  # the request came from GB
    assert enrich({})["country"] == "GB"
    assert enrich({"ip": "8.8.8.8"})["country"] == "US"  # a server sending for its visitor
    assert enrich({"ip": "8.8.8.8", "location": {"country": "fr"}})["country"] == "FR"
    assert enrich({"location": {"country": "France"}})["country"] == "GB"  # a name is no code: the address
    assert enrich({"ip": "not an address"})["country"] == "GB"
    assert address_of({"ip": 12}, "10.0.0.1") == "10.0.0.1"


@pytest.mark.parametrize(("context", "country"), [
    ({"location": {"country": "de"}}, "DE"), ({"location": {"country": "DE"}}, "DE"),
    ({"location": {"country": "Germany"}}, ""), ({"location": {"country": "D1"}}, ""),
    ({"location": {"country": "ÄÖ"}}, ""), ({"location": "DE"}, ""), ({}, ""),
])
def test_a_declared_country_is_a_two_letter_code(context: dict[str, object], country: str) -> None:
    assert declared_country(context) == country
