"""A ClickHouse cluster, the app's side without a server: the DDL the migrations run on each host
of a cluster (replicated tables cannot be created on the offline engine, so their text is what is
tested here; the Distributed side runs on two stand-in shards in
testbed/clickhouse-standin/tests/test_cluster.py), the host list, and a single server unchanged."""

from __future__ import annotations

import re

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from pydantic import ValidationError

from footprint import migrate, stores
from footprint.settings import Settings, parse_ch_hosts

PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def statements(cluster: str, replicated: bool = True) -> dict[str, list[str]]:
    settings = Settings(ch_cluster=cluster, ch_database="fp", ch_replicated=replicated)
    return {m.name: migrate.clickhouse_statements(m, settings) for m in migrate.load("clickhouse")}


def test_a_single_server_runs_the_migrations_as_written() -> None:
    single = statements("")
    for mig in migrate.load("clickhouse"):
        assert single[mig.name] == migrate.split_statements(mig.text.replace("{db}", "fp"))
        assert not any("_local" in s or "Replicated" in s or "Distributed" in s for s in single[mig.name])


def test_a_cluster_gets_replicated_local_tables_and_distributed_tables_under_the_same_names() -> None:
    every = [s for stmts in statements("footprint").values() for s in stmts]
    creates = {m.group(1): s for s in every if (m := re.match(r"CREATE TABLE IF NOT EXISTS fp\.(\w+)\s", s))}
    assert set(creates) == {"events", "events_local", "event_ids", "event_ids_local",
                            "link_hourly", "link_hourly_local", "stats_hourly", "stats_hourly_local",
                            "breakdowns_daily", "breakdowns_daily_local", "links_daily", "links_daily_local",
                            "visitors_daily", "visitors_daily_local", "visits_closed", "visits_closed_local",
                            "visits_days", "visits_days_local"}
    events_engine = f"ENGINE = ReplicatedReplacingMergeTree({PATH})\nPARTITION BY toYYYYMM(footprint_time)"
    assert events_engine in creates["events_local"]
    assert f"ENGINE = ReplicatedReplacingMergeTree({PATH})\nORDER BY event_id" in creates["event_ids_local"]
    assert f"ENGINE = ReplicatedAggregatingMergeTree({PATH})" in creates["link_hourly_local"]
    assert f"ENGINE = ReplicatedAggregatingMergeTree({PATH})" in creates["stats_hourly_local"]
    assert f"ENGINE = ReplicatedAggregatingMergeTree({PATH})" in creates["breakdowns_daily_local"]
    assert f"ENGINE = ReplicatedAggregatingMergeTree({PATH})" in creates["links_daily_local"]
    assert f"ENGINE = ReplicatedAggregatingMergeTree({PATH})" in creates["visitors_daily_local"]
    # sharded by event_id: a replay meets its first write on the same shard
    assert creates["events"] == ("CREATE TABLE IF NOT EXISTS fp.events AS fp.events_local\n"
                                 "ENGINE = Distributed('footprint', 'fp', 'events_local', cityHash64(event_id))")
    assert creates["event_ids"].endswith("Distributed('footprint', 'fp', 'event_ids_local', cityHash64(event_id))")
    # the rollups are written by the views on each host only: no sharding key, writes refused
    assert creates["link_hourly"].endswith("Distributed('footprint', 'fp', 'link_hourly_local')")
    assert creates["breakdowns_daily"].endswith("Distributed('footprint', 'fp', 'breakdowns_daily_local')")
    assert creates["links_daily"].endswith("Distributed('footprint', 'fp', 'links_daily_local')")
    # the closed visits are written through their Distributed tables (footprint close-visits), spread at random
    assert f"ENGINE = ReplicatedReplacingMergeTree({PATH})" in creates["visits_closed_local"]
    assert creates["visits_closed"].endswith("Distributed('footprint', 'fp', 'visits_closed_local', rand())")
    assert creates["visits_days"].endswith("Distributed('footprint', 'fp', 'visits_days_local', rand())")
    # each local table before its Distributed table
    assert every.index(creates["events_local"]) < every.index(creates["events"])
    assert not any("ON CLUSTER" in s for s in every)


def test_shards_without_replicas_keep_the_migrations_engines_and_only_that_changes() -> None:
    replicated, plain = statements("footprint"), statements("footprint", replicated=False)
    engine = re.compile(r"ENGINE = Replicated(\w*MergeTree)\(" + re.escape(PATH) + r"\)")
    changed = 0
    for name, stmts in replicated.items():
        assert len(plain[name]) == len(stmts)
        for r, p in zip(stmts, plain[name], strict=True):
            assert "Replicated" not in p
            assert engine.sub(r"ENGINE = \1", r) == p
            changed += r != p
    assert changed == 9  # the nine local tables; their Distributed tables and everything else as before


def test_views_indexes_and_backfills_work_on_the_local_tables() -> None:
    by_name = statements("footprint")
    views = [s for name in ("0001_events.sql", "0002_event_ids.sql", "0003_read_side.sql", "0008_breakdowns_daily.sql",
                            "0009_links_daily.sql", "0010_visitors_daily.sql")
             for s in by_name[name] if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 6
    for view in views:
        assert re.search(r"\bTO fp\.\w+_local AS\b", view) and "FROM fp.events_local" in view, view
    assert "INSERT INTO fp.event_ids_local SELECT event_id FROM fp.events_local" in by_name["0002_event_ids.sql"]
    read_side = by_name["0003_read_side.sql"]
    assert read_side[0].startswith("ALTER TABLE fp.events_local ADD INDEX IF NOT EXISTS events_user_idx")
    assert read_side[1].startswith("ALTER TABLE fp.events_local MATERIALIZE INDEX")  # no index on a Distributed table
    assert next(s for s in read_side if s.startswith("INSERT INTO")).startswith("INSERT INTO fp.stats_hourly_local")
    backfill = by_name["0008_breakdowns_daily.sql"][-1]  # each host's own events into its own rollup
    assert backfill.startswith("INSERT INTO fp.breakdowns_daily_local") and "FROM fp.events_local FINAL" in backfill
    backfill = by_name["0009_links_daily.sql"][-1]
    assert backfill.startswith("INSERT INTO fp.links_daily_local") and "FROM fp.events_local FINAL" in backfill
    backfill = by_name["0010_visitors_daily.sql"][-1]
    assert backfill.startswith("INSERT INTO fp.visitors_daily_local") and "FROM fp.events_local FINAL" in backfill
    enrichment = by_name["0004_enrichment.sql"]
    # a column change on the local table, then on the Distributed table
    assert enrichment[0].startswith("ALTER TABLE fp.events_local\n    ADD COLUMN IF NOT EXISTS referrer_host String")
    assert enrichment[1].startswith("ALTER TABLE fp.events\n    ADD COLUMN IF NOT EXISTS referrer_host String")
    assert all("FROM fp.events_local" in s for s in enrichment if "MODIFY QUERY" in s)
    every = [s for stmts in by_name.values() for s in stmts]
    # the only statements naming a Distributed table: its creation and its column changes
    for s in every:
        if re.search(rf"\bfp\.({'|'.join(migrate.CLUSTER_TABLES)})\b", s):
            assert s.startswith(("CREATE TABLE IF NOT EXISTS fp.", "ALTER TABLE fp.events\n",
                                 "ALTER TABLE fp.event_ids\n")), s
    retention = by_name["0005_retention.sql"]
    assert retention[0].startswith("ALTER TABLE fp.event_ids_local\n    ADD COLUMN IF NOT EXISTS footprint_time")
    assert retention[1].startswith("ALTER TABLE fp.event_ids\n    ADD COLUMN IF NOT EXISTS footprint_time")
    assert retention[2].startswith("ALTER TABLE fp.event_ids_mv MODIFY QUERY")
    assert "FROM fp.events_local" in retention[2]
    assert retention[-1] == "OPTIMIZE TABLE fp.event_ids_local FINAL"


def test_a_table_the_cluster_layout_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="visits: a table the cluster layout does not know"):
        migrate.cluster_statements(["CREATE TABLE IF NOT EXISTS {db}.visits (a UInt8) ENGINE = MergeTree ORDER BY a"],
                                   "footprint")


def test_host_lists() -> None:
    assert parse_ch_hosts("127.0.0.1", 8123) == [("127.0.0.1", 8123)]
    assert parse_ch_hosts("a, b:8124,[fd00::1]:9000,[::1]", 8123) == [
        ("a", 8123), ("b", 8124), ("fd00::1", 9000), ("::1", 8123)]
    assert Settings(ch_host="a,b", ch_port=8443).ch_endpoints() == [("a", 8443), ("b", 8443)]
    for bad in ("a,,b", "a:x", "a:0", "[::1]x", ""):
        with pytest.raises(ValueError):
            parse_ch_hosts(bad, 8123)
    with pytest.raises(ValidationError, match="ch_cluster"):
        Settings(ch_cluster="foot-print")


def test_the_client_fails_over_on_a_connection_error_only(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def get_client(host: str, **_: object) -> str:
        tried.append(host)
        if host == "down":
            raise OperationalError("connection refused")
        if host == "denied":
            raise DatabaseError("Code: 516. Authentication failed")
        return f"client of {host}"

    monkeypatch.setattr(stores.clickhouse_connect, "get_client", get_client)
    assert stores.ch_client(Settings(ch_host="down,up,down")) == "client of up"
    assert tried == ["down", "up"]
    tried.clear()
    with pytest.raises(stores.StoreUnavailable) as err:
        stores.ch_client(Settings(ch_host="down,denied,up"), "reader")
    assert tried == ["down", "denied"]  # a host that answered "no" is not a failover case
    assert str(err.value).startswith("ClickHouse (reader, footprint_reader@down:8123): connection refused; "
                                     "ClickHouse (reader, footprint_reader@denied:8123): Code: 516")
    with pytest.raises(stores.StoreUnavailable, match=r"^ClickHouse \(writer, footprint_writer@down:8123\): conn"):
        stores.ch_client(Settings(ch_host="down"))
