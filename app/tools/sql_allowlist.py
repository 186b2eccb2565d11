#!/usr/bin/env python3
"""Write the SQL API's function allowlist (src/footprint/sql_functions.tsv) from the ClickHouse engine.

    python app/tools/sql_allowlist.py [--check]

Reads ``system.functions`` of the pinned engine (PyPI chdb-core, the test bed's stand-in) and keeps
the functions that only compute on their arguments: the categories below, a few named ones from
"Other", never a name of DENY; an alias is kept when what it stands for is. A function a newer
ClickHouse adds is therefore refused until this list is made again and reviewed. ``--check`` fails
when the file differs from what the engine gives (a test runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "footprint" / "sql_functions.tsv"

# categories whose functions compute on their arguments only (ClickHouse's own classification)
SAFE_CATEGORIES = frozenset({
    "Aggregate Functions", "Arithmetic", "Arrays", "Bit", "Bitmap", "Comparison", "Conditional", "Dates and Times",
    "Distance", "Encoding", "Financial", "Geo", "Hash", "IP Address", "JSON", "Logical", "Map", "Mathematical",
    "Null", "Random Number", "Rounding", "String", "String Replacement", "String Search", "String Splitting",
    "Time Window", "Tuple", "Type Conversion", "URL", "UUID",
})
# from "Other" and "Internal": pure functions a query over the events may want
EXTRAS = frozenset({
    "_CAST", "assumeNotNull", "bar", "formatReadableDecimalSize", "formatReadableQuantity", "formatReadableSize",
    "formatReadableTimeSize", "identity", "ifNotFinite", "ignore", "isFinite", "isInfinite", "isNaN",
    "materialize", "toColumnTypeName", "toTypeName", "transform",
})
# never, whatever their category: they wait, read the server's state, or reach outside the query
DENY = frozenset({
    "sleep", "sleepEachRow", "getSetting", "getSettingOrDefault", "serverTimezone", "serverUUID", "hostName",
    "FQDN", "version", "uptime", "currentUser", "currentDatabase", "currentProfiles", "currentRoles",
    "enabledProfiles", "enabledRoles", "defaultProfiles", "defaultRoles", "getMacro", "getOSKernelVersion",
    "getServerPort", "tcpPort", "file", "url", "dictGet", "joinGet", "throwIf", "generateSerialID",
    "getClientHTTPHeader", "queryID", "initialQueryID", "initialQueryStartTime", "connectionId", "displayName",
    "filesystemAvailable", "filesystemCapacity", "filesystemUnreserved", "catboostEvaluate", "evalMLMethod",
})


def rows() -> list[tuple[str, str, str, int, int]]:
    import chdb

    text = chdb.query("SELECT name, categories, alias_to, case_insensitive, is_aggregate FROM system.functions "
                      "ORDER BY name", "TSVRaw").data()
    out = []
    for line in text.splitlines():
        name, categories, alias_to, ci, agg = line.split("\t")
        out.append((name, categories, alias_to, int(ci), int(agg)))
    return out


def allowlist(functions: list[tuple[str, str, str, int, int]]) -> list[str]:
    by_name = {f[0]: f for f in functions}

    def safe(name: str, seen: int = 0) -> bool:
        f = by_name.get(name)
        if f is None or name in DENY or seen > 5:
            return False
        if f[2]:  # an alias: as safe as what it stands for
            return safe(f[2], seen + 1)
        categories = set(f[1].split(", "))
        return name in EXTRAS or bool(categories & SAFE_CATEGORIES and not categories - SAFE_CATEGORIES)

    lines = []
    for name, _categories, alias_to, ci, agg in functions:
        if safe(name):
            aggregate = agg or (alias_to and by_name.get(alias_to, ("", "", "", 0, 0))[4])
            flags = ("a" if aggregate else "") + ("i" if ci else "")
            lines.append(f"{name}\t{flags or '-'}")
    return lines


def main() -> int:
    lines = allowlist(rows())
    text = ("# SQL API function allowlist, made by app/tools/sql_allowlist.py from the pinned ClickHouse engine\n"
            "# name<TAB>flags (a: aggregate, combinators allowed; i: case-insensitive; -: none)\n"
            + "\n".join(lines) + "\n")
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            print(f"{OUT} differs from the engine's functions: run app/tools/sql_allowlist.py", file=sys.stderr)
            return 1
        print(f"{OUT}: current ({len(lines)} functions)")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}: {len(lines)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
