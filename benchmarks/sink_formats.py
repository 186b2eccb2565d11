#!/usr/bin/env python3
"""Micro-benchmark: the cheapest way to write a batch of canonical events into each store.

Starts PostgreSQL and the ClickHouse engine (no Kafka), migrates both, then writes the same kind of
events (generated page events, canonical JSON) in batches with each method, fresh ids every time.
Prints per method the wall time per event (the store alone, nothing else running) and the client's
own CPU time per event (what the consumer's Python pays). Informs ``sinks.py``; figures in RESULTS.md.

  python benchmarks/sink_formats.py [--batch 20000] [--batches 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import machine, services
from footprint.contract import decode_message, encode_event
from footprint.settings import Settings


def timed(label: str, batches: list[dict[str, bytes]], write: Callable[[dict[str, bytes]], Any]) -> None:
    write(batches[0])  # warm-up (connections, caches)
    wall = cpu = 0.0
    n = 0
    for docs in batches[1:]:
        t, c = time.perf_counter(), time.process_time()
        write(docs)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        n += len(docs)
    print(f"  {label:58} {1e6 * wall / n:7.2f} us/event wall  {1e6 * cpu / n:7.2f} us/event client CPU", flush=True)


def pg_methods(sink: Any, settings: Settings) -> dict[str, Callable[[dict[str, bytes]], Any]]:
    import psycopg
    from footprint.contract import COLUMNS

    conn = psycopg.connect(settings.pg_dsn.get_secret_value())
    cols = ", ".join(c.name for c in COLUMNS)
    conn.execute("CREATE TEMP TABLE stage_doc (doc jsonb NOT NULL) ON COMMIT DELETE ROWS")
    conn.execute("CREATE TEMP TABLE stage_json (doc json NOT NULL) ON COMMIT DELETE ROWS")
    conn.execute("CREATE TEMP TABLE stage_typed (LIKE events) ON COMMIT DELETE ROWS")
    conn.execute("CREATE TEMP TABLE stage_text ("
                 + ", ".join(f"{c.name} {'text' if c.pg_type in ('jsonb', 'uuid', 'timestamptz') else c.pg_type}"
                             for c in COLUMNS) + ") ON COMMIT DELETE ROWS")
    conn.commit()
    from_doc = ", ".join(f"doc->'{c.name}'" if c.pg_type == "jsonb" else f"doc->>'{c.name}'" if c.pg_type == "text"
                         else f"(doc->>'{c.name}')::{c.pg_type}" for c in COLUMNS)
    casts = ", ".join(f"{c.name}::{c.pg_type}" if c.pg_type in ("jsonb", "uuid", "timestamptz") else c.name
                      for c in COLUMNS)
    import msgspec

    kinds = {"uuid": str, "type": str, "short": str, "text": str, "object": msgspec.Raw, "time": str,
             "version": int, "bool": bool}
    row_type = msgspec.defstruct("Row", [(c.name, kinds[c.kind]) for c in COLUMNS])
    decoder = msgspec.json.Decoder(row_type)
    objects = [i for i, c in enumerate(COLUMNS) if c.kind == "object"]

    def rows(docs: dict[str, bytes]) -> list[list[Any]]:
        out = []
        for doc in docs.values():
            row = list(msgspec.structs.astuple(decoder.decode(doc)))
            for i in objects:
                row[i] = bytes(row[i]).decode()
            out.append(row)
        return out

    def csv_jsonb(docs: dict[str, bytes]) -> None:
        with conn.cursor() as cur:
            with cur.copy("COPY stage_doc (doc) FROM STDIN (FORMAT csv)") as copy:
                copy.write(b"".join(b'"' + d.replace(b'"', b'""') + b'"\n' for d in docs.values()))
            cur.execute(f"INSERT INTO events ({cols}) SELECT {from_doc} FROM stage_doc ON CONFLICT (event_id) DO NOTHING")
        conn.commit()

    def csv_json_populate(docs: dict[str, bytes]) -> None:
        with conn.cursor() as cur:
            with cur.copy("COPY stage_json (doc) FROM STDIN (FORMAT csv)") as copy:
                copy.write(b"".join(b'"' + d.replace(b'"', b'""') + b'"\n' for d in docs.values()))
            cur.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM stage_json,"
                        " json_populate_record(NULL::events, doc) ON CONFLICT (event_id) DO NOTHING")
        conn.commit()

    def binary_text(docs: dict[str, bytes]) -> None:
        data = rows(docs)
        with conn.cursor() as cur:
            with cur.copy(f"COPY stage_text ({cols}) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(["text" if c.pg_type in ("jsonb", "uuid", "timestamptz") else c.pg_type
                                for c in COLUMNS])
                for row in data:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO events ({cols}) SELECT {casts} FROM stage_text ON CONFLICT (event_id) DO NOTHING")
        conn.commit()

    def binary_text_rows_only(docs: dict[str, bytes]) -> None:
        rows(docs)

    import uuid
    from datetime import datetime

    typed_kinds = {**kinds, "uuid": uuid.UUID, "time": datetime}
    typed_decoder = msgspec.json.Decoder(msgspec.defstruct("TypedRow", [(c.name, typed_kinds[c.kind]) for c in COLUMNS]))
    conn.execute("CREATE TEMP TABLE stage_typed2 ("
                 + ", ".join(f"{c.name} {'text' if c.pg_type == 'jsonb' else c.pg_type}" for c in COLUMNS)
                 + ") ON COMMIT DELETE ROWS")
    conn.commit()
    json_casts = ", ".join(f"{c.name}::jsonb" if c.pg_type == "jsonb" else c.name for c in COLUMNS)

    def binary_typed(docs: dict[str, bytes]) -> None:
        with conn.cursor() as cur:
            with cur.copy(f"COPY stage_typed2 ({cols}) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(["text" if c.pg_type == "jsonb" else c.pg_type for c in COLUMNS])
                for doc in docs.values():
                    row = list(msgspec.structs.astuple(typed_decoder.decode(doc)))
                    for i in objects:
                        row[i] = bytes(row[i]).decode()
                    copy.write_row(row)
            cur.execute(f"INSERT INTO events ({cols}) SELECT {json_casts} FROM stage_typed2"
                        " ON CONFLICT (event_id) DO NOTHING")
        conn.commit()

    def direct_text(docs: dict[str, bytes]) -> None:
        with conn.cursor() as cur:
            held = {r[0] for r in cur.execute("SELECT event_id::text FROM events WHERE event_id = ANY(%s::uuid[])",
                                              (list(docs),))}
            with cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
                for key, row in zip(docs, rows(docs), strict=True):
                    if key not in held:
                        copy.write_row(row)
        conn.commit()

    return {
        "this tree's PostgresSink.write": sink.write,
        "ids looked up, then text COPY straight into events (no staging)": direct_text,
        "CSV COPY of jsonb docs, INSERT SELECT doc->>col (0.3.0)": csv_jsonb,
        "CSV COPY of json docs, json_populate_record": csv_json_populate,
        "binary COPY of text columns, INSERT SELECT with casts": binary_text,
        "binary COPY of typed columns (uuid, timestamptz), jsonb cast": binary_typed,
        "(msgspec rows for the binary COPY alone, no store)": binary_text_rows_only,
    }


def ch_methods(sink: Any) -> dict[str, Callable[[dict[str, bytes]], Any]]:
    import msgspec
    from footprint.contract import COLUMNS
    from footprint.sinks import CH_INSERT_SETTINGS

    sink.connect()
    client = sink._client
    names = [c.name for c in COLUMNS]
    types = [c.ch_type for c in COLUMNS]
    kinds = {"uuid": str, "type": str, "short": str, "text": str, "object": msgspec.Raw, "time": str,
             "version": int, "bool": bool}
    row_type = msgspec.defstruct("Row", [(c.name, kinds[c.kind]) for c in COLUMNS], array_like=False)
    decoder = msgspec.json.Decoder(row_type)

    def json_each_row(docs: dict[str, bytes]) -> None:
        client.raw_insert("events", column_names=names, insert_block=b"\n".join(docs.values()),
                          settings=CH_INSERT_SETTINGS, fmt="JSONEachRow")

    def native(docs: dict[str, bytes]) -> None:
        from datetime import datetime

        structs = [decoder.decode(d) for d in docs.values()]
        columns: list[list[Any]] = []
        for c in COLUMNS:
            col = [getattr(e, c.name) for e in structs]
            if c.kind == "object":
                col = [bytes(v).decode() for v in col]
            elif c.kind == "time":
                col = [datetime.fromisoformat(v[:26]) for v in col]
            columns.append(col)
        client.insert("events", columns, column_names=names, column_type_names=types, column_oriented=True)

    return {
        "this tree's ClickHouseSink.write (lookup + insert)": sink.write,
        "JSONEachRow of the docs (0.3.0, no lookup)": json_each_row,
        "Native, column-oriented via insert() (no lookup)": native,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--batches", type=int, default=5, help="timed batches per method (plus one warm-up)")
    args = ap.parse_args()
    from footprint import sinks
    from helpers import gen_events

    print(machine())
    with services(kafka=False) as s:
        seed = iter(range(1000, 10**6))

        def batches() -> list[dict[str, bytes]]:
            out = []
            for _ in range(args.batches + 1):
                events = [dict(e, type="page", method=e["method"] or "GET", link=e["link"] or "/")
                          for e in gen_events(args.batch, seed=next(seed))]
                out.append(dict(decode_message(encode_event(e)) for e in events))
            return out

        pg_sink, ch_sink = sinks.PostgresSink(s.pg_dsn.get_secret_value()), sinks.ClickHouseSink(s)
        print(f"PostgreSQL ({args.batch}-event batches):")
        for label, method in pg_methods(pg_sink, s).items():
            timed(label, batches(), method)
        print(f"ClickHouse ({args.batch}-event batches):")
        for label, method in ch_methods(ch_sink).items():
            timed(label, batches(), method)
        pg_sink.close()
        ch_sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
