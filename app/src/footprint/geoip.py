"""A reader of MaxMind's legacy GeoIP country databases (``GeoIP.dat``, ``GeoIPv6.dat``), as Debian's
``geoip-database`` package ships them: the country of an address, offline, in the file's own terms.

The format (libGeoIP's "country edition"): a binary search tree over the address's bits, most
significant first. Node ``n`` is 6 bytes at ``6 * n``: two 3-byte little-endian records, the left one
for a 0 bit, the right one for a 1 bit. A record below ``COUNTRY_BEGIN`` is the next node; one at or
above it is a leaf: ``record - COUNTRY_BEGIN`` indexes ``CODES`` (0: not found). An IPv4 database has
32 levels, an IPv6 database 128. At the file's end: the database's info text (after three NUL bytes,
libGeoIP's ``GeoIP_database_info``) and its type (after three 0xFF bytes; absent: a country edition).

The file is mapped read-only once (``mmap``: the collector's worker processes share its pages) and
never written. A file that is not a country edition, or whose tree points outside it, is refused when
opened (``GeoIPError`` names the file and why) or, for a damaged node met later, answers ``--``.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path

COUNTRY_BEGIN = 16776960  # libGeoIP's COUNTRY_BEGIN: the first leaf record of a country edition
RECORD_BYTES = 3
NODE_BYTES = 2 * RECORD_BYTES
COUNTRY_EDITION = 1  # libGeoIP's GEOIP_COUNTRY_EDITION
COUNTRY_EDITION_V6 = 12  # GEOIP_COUNTRY_EDITION_V6
_EDITIONS = {4: COUNTRY_EDITION, 6: COUNTRY_EDITION_V6}
_STRUCTURE_INFO_MAX = 20  # libGeoIP's STRUCTURE_INFO_MAX_SIZE
_INFO_MAX = 100  # DATABASE_INFO_MAX_SIZE
# libGeoIP's GeoIP_country_code[], index = country id (libGeoIP 1.6.12, read with GeoIP_code_by_id)
_CODES_TEXT = """
-- AP EU AD AE AF AG AI AL AM CW AO AQ AR AS AT AU AW AZ BA BB BD BE BF BG BH BI BJ BM BN BO BR BS BT BV BW BY BZ CA
CC CD CF CG CH CI CK CL CM CN CO CR CU CV CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR SX GA GB
GD GE GF GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IN IO IQ IR IS IT JM JO JP KE KG KH KI KM
KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RU RW SA SB SC SD SE SG SH SI
SJ SK SL SM SN SO SR ST SV SY SZ TC TD TF TG TH TJ TK TM TN TO TL TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN
VU WF WS YE YT RS ZA ZM ME ZW A1 A2 O1 AX GG IM JE BL MF BQ SS O1
"""
CODES: tuple[str, ...] = tuple(_CODES_TEXT.split())
assert len(CODES) == 256
NOT_FOUND = CODES[0]
_DATE = re.compile(r"\b(\d{4})(\d\d)(\d\d)\b")


class GeoIPError(ValueError):
    """A database that cannot be read: the message names the file and why."""


class CountryDatabase:
    """One legacy country database, IPv4 (``version=4``) or IPv6 (``version=6``), mapped read-only."""

    def __init__(self, path: str | Path, version: int) -> None:
        self.path = str(path)
        self.version = version
        self.bits = 32 if version == 4 else 128
        try:
            with open(self.path, "rb") as f:
                self._data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # missing, unreadable, empty (mmap of 0 bytes)
            raise GeoIPError(f"{self.path}: cannot read ({exc})") from None
        edition = self._edition()
        if edition != _EDITIONS[version]:
            raise GeoIPError(f"{self.path}: database type {edition}, not the IPv{version} country edition"
                             f" ({_EDITIONS[version]}) this reader reads")
        if len(self._data) < NODE_BYTES:
            raise GeoIPError(f"{self.path}: too short for a database")
        self.info = self._info()
        match = _DATE.search(self.info)
        self.built = f"{match[1]}-{match[2]}-{match[3]}" if match else ""

    def _edition(self) -> int:
        """The database type recorded at the file's end (libGeoIP's structure info), else a country edition."""
        at = _marker_before_end(self._data, b"\xff\xff\xff", _STRUCTURE_INFO_MAX)
        if at is not None and at + 3 < len(self._data):
            kind = self._data[at + 3]
            return kind - 105 if kind >= 106 else kind
        return COUNTRY_EDITION if self.version == 4 else COUNTRY_EDITION_V6

    def _info(self) -> str:
        """The database's info text (edition, build date, copyright), as ``geoiplookup -v`` prints it."""
        at = _marker_before_end(self._data, b"\x00\x00\x00", _INFO_MAX)
        if at is None:
            return ""
        text = bytes(self._data[at + 3:at + 3 + _INFO_MAX - 1]).split(b"\x00", 1)[0]
        return text.split(b"\xff\xff\xff", 1)[0].decode("latin-1")  # the structure info follows

    def code(self, number: int) -> str:
        """The code of the address ``number`` (an integer of ``bits`` bits): ISO 3166-1 alpha-2 for a country,
        ``--`` when the database has none, or one of the legacy pseudo-codes (``AP``, ``EU``, ``A1``, ``A2``,
        ``O1``)."""
        data = self._data
        node = 0
        size = len(data)
        for depth in range(self.bits - 1, -1, -1):
            at = node * NODE_BYTES + (RECORD_BYTES if number >> depth & 1 else 0)
            if at + RECORD_BYTES > size:
                return NOT_FOUND  # a damaged tree: no answer rather than a wrong one
            record = data[at] | data[at + 1] << 8 | data[at + 2] << 16
            if record >= COUNTRY_BEGIN:
                index = record - COUNTRY_BEGIN
                return CODES[index] if index < len(CODES) else NOT_FOUND
            node = record
        return NOT_FOUND  # deeper than the address: a damaged tree

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()


def _marker_before_end(data: bytes | mmap.mmap, marker: bytes, within: int) -> int | None:
    """Where ``marker`` (3 bytes) starts, searched backwards from the file's last 3 bytes over ``within``
    positions (as libGeoIP searches), or None."""
    for back in range(within):
        at = len(data) - 3 - back
        if at < 0:
            return None
        if data[at:at + 3] == marker:
            return at
    return None
