"""Two stand-in shards with the clickhouse role's rendered cluster configuration (what can run offline).

The role renders footprint-cluster.xml for a made-up inventory of two shards of one replica each
(testbed/tests/test_clickhouse_cluster_model.py's render, the role's own tasks and template; TLS
off, which the stand-in cannot serve). The one change before serving it: the inventory's
addresses 10.77.0.71/72 become 127.0.0.1 in the file (the role refuses a loopback
clickhouse_interserver_host, and the stand-ins listen on loopback); ports are the stand-ins' own.
Then, as the engine reads it:
- system.clusters shows the role's shards, getMacro() each host's macros;
- the app's own migrations for a cluster (FOOTPRINT_CH_CLUSTER), run by migrate_clickhouse on
  every host, for shards without replicas (FOOTPRINT_CH_REPLICATED=false: the plain engines),
  because the stand-in cannot create a replicated table (test_a_replicated_table_cannot_be_
  created_here shows it refuses); no replica exists here, replication is not tested;
- the app's ClickHouse sink writes events through the Distributed table, sharded by event_id: the
  rows are spread over both shards as cityHash64(event_id) says, the sink's id lookup finds them
  on either shard, a replayed event lands on the shard of its first write (so FINAL collapses it),
  the rollup views fill each shard's local rollup, and a client given a host that is down first
  fails over to the next and reads everything;
- the erasure of a user (the read API's job, its ClickHouse part) reaches both shards: their
  events, ids and rollup rows go from each shard's local tables, the rollups keep the others'
  events; with a shard's only host unreachable it refuses, naming the shards reached.
NOT exercised here: Keeper / ZooKeeper (the zookeeper section is not carried), replication,
interserver fetches, ON CLUSTER, TLS between the nodes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT / "app" / "src"))  # this checkout's app

from chstandin import StandIn, StandInUser  # noqa: E402
from chstandin.fixture import free_port  # noqa: E402
from footprint import migrate  # noqa: E402
from footprint.closedvisits import EPOCH, TYPES, bind, day_number, micros  # noqa: E402
from footprint.erasure import Eraser  # noqa: E402
from footprint.goals import Goal  # noqa: E402
from footprint.schema import dumps, make_event  # noqa: E402
from footprint.settings import Settings  # noqa: E402
from footprint.sinks import ClickHouseSink  # noqa: E402
from footprint.stats import Filter, Params, run_clickhouse  # noqa: E402
from footprint.stores import StoreUnavailable, ch_client  # noqa: E402
from footprint.visitcloser import close_visits  # noqa: E402

ENGINES = ["MergeTree", "ReplacingMergeTree", "AggregatingMergeTree", "Distributed"]
# the role's grants in a cluster (roles/clickhouse/vars/main.yml)
OWNER = StandInUser("footprint_owner", "owner-pw-1234", ("ALL ON footprint.*", *(f"TABLE ENGINE ON {e}" for e in ENGINES),
                                                         "SELECT ON system.macros", "SELECT ON system.clusters"))
WRITER = StandInUser("footprint_writer", "writer-pw-1234", ("INSERT, SELECT ON footprint.*",))
READER = StandInUser("footprint_reader", "reader-pw-1234", ("SELECT ON footprint.*",))


def _model() -> Any:
    sys.path.insert(0, str(ROOT / "testbed" / "tests"))  # its helpers (local_play), also when this file runs alone
    spec = importlib.util.spec_from_file_location("ch_model", ROOT / "testbed/tests/test_clickhouse_cluster_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rendered_cluster_configs(tmp: Path, ports: list[tuple[int, int]]) -> list[str]:
    """The role's footprint-cluster.xml of s1 (shard 1) and s2 (shard 2), addresses made loopback."""
    model = _model()
    hosts = {}
    for n, (http, tcp) in enumerate(ports, start=1):
        hosts[f"s{n}"] = {**model.node(n, n, "r1", n), "clickhouse_http_port": http, "clickhouse_tcp_port": tcp}
    tmp.mkdir(parents=True, exist_ok=True)
    res = model.render(tmp, model.inventory(hosts, ["s1"], clickhouse_tls_enabled=False))
    assert res.returncode == 0, res.stdout[-3000:]
    texts = [(tmp / "out" / f"{h}.footprint-cluster.xml").read_text() for h in hosts]
    return [re.sub(r"10\.77\.0\.7[0-9]", "127.0.0.1", t) for t in texts]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[StandIn]]:
    base = tmp_path_factory.mktemp("ch-cluster")
    ports = [(free_port(), free_port()) for _ in range(2)]
    configs = rendered_cluster_configs(base / "render", ports)
    started: list[StandIn] = []
    try:
        for n, ((http, tcp), text) in enumerate(zip(ports, configs, strict=True), start=1):
            ch = StandIn(base / f"s{n}", users=[OWNER, WRITER, READER], databases=("footprint",),
                         http_port=http, tcp_port=tcp, extra_config={"footprint-cluster.xml": text})
            started.append(ch.start())
        yield started
    finally:
        for ch in started:
            ch.stop()


def settings_for(shards: list[StandIn], hosts: str | None = None) -> Settings:
    return Settings(
        ch_host=hosts or ",".join(f"{ch.host}:{ch.http_port}" for ch in shards), ch_cluster="footprint",
        ch_replicated=False,
        ch_user=WRITER.name, ch_password=SecretStr(WRITER.password),
        ch_owner_user=OWNER.name, ch_owner_password=SecretStr(OWNER.password),
        ch_reader_user=READER.name, ch_reader_password=SecretStr(READER.password),
    )


def scalar(ch: StandIn, sql: str) -> str:
    """``sql`` as the local ``default`` user (system tables; the app users are the sink's and the migration's)."""
    try:
        return ch.query(sql).strip()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(exc.read().decode(errors="replace")[:500]) from None


def test_system_clusters_shows_the_role_s_shards(shards: list[StandIn]) -> None:
    for ch in shards:
        rows = scalar(ch, "SELECT shard_num, replica_num, host_address, port FROM system.clusters "
                          "WHERE cluster = 'footprint' ORDER BY shard_num FORMAT TSV")
        assert rows.splitlines() == [f"{n}\t1\t127.0.0.1\t{s.tcp_port}" for n, s in enumerate(shards, start=1)]


def test_each_host_has_its_macros(shards: list[StandIn]) -> None:
    for n, ch in enumerate(shards, start=1):
        assert scalar(ch, "SELECT getMacro('cluster'), getMacro('shard'), getMacro('replica') FORMAT TSV") == \
            f"footprint\t{n}\tr1"


def test_a_replicated_table_cannot_be_created_here(shards: list[StandIn]) -> None:
    # the limit the rest of this file works around, shown rather than assumed
    with pytest.raises(Exception, match=r"(?i)zookeeper|keeper|replicated"):
        scalar(shards[0], "CREATE TABLE footprint.replicated_probe (a UInt8) ENGINE = "
                          "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}') ORDER BY a")


@pytest.fixture(scope="module")
def migrated(shards: list[StandIn]) -> list[str]:
    # shards without replicas (FOOTPRINT_CH_REPLICATED=false): the migrations' own engines
    applied = migrate.migrate_clickhouse(settings_for(shards))
    assert migrate.migrate_clickhouse(settings_for(shards)) == []  # each host recorded them
    return applied


def write_all(shards: list[StandIn], batch: dict[str, bytes]) -> None:
    """``batch`` through the app's ClickHouse sink (the Distributed tables), every event new."""
    sink = ClickHouseSink(settings_for(shards))
    try:
        assert sink.write(batch) == len(batch)
    finally:
        sink.close()


def docs(n: int, start: datetime) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        event = make_event(type="page", link=f"/p{i % 7}", anonymous_id=f"a{i % 13}", method="GET",
                           footprint_time=start + timedelta(seconds=i), received_at=start + timedelta(seconds=i))
        out[event["event_id"]] = dumps(event)
    return out


def test_the_migrations_make_local_and_distributed_tables_on_every_host(shards: list[StandIn], migrated: list[str]) -> None:
    assert migrated == [m.name for m in migrate.load("clickhouse")]
    for ch in shards:
        engines = dict(line.split("\t") for line in scalar(
            ch, "SELECT name, engine FROM system.tables WHERE database = 'footprint' FORMAT TSV").splitlines())
        for table in migrate.CLUSTER_TABLES:
            assert engines[table] == "Distributed"
            assert engines[f"{table}_local"].endswith("MergeTree")
        assert scalar(ch, "SELECT count() FROM footprint.schema_migrations FINAL") == str(len(migrated))


def assert_each_event_on_its_shard(shards: list[StandIn]) -> None:
    """Shard n+1 holds exactly the events whose cityHash64(event_id) % 2 == n (the sharding key)."""
    for n, ch in enumerate(shards):
        assert scalar(ch, f"SELECT countIf(cityHash64(event_id) % 2 != {n}) FROM footprint.events_local") == "0"


def test_distributed_writes_shard_by_event_id_and_a_replay_stays_on_its_shard(
    shards: list[StandIn], migrated: list[str]
) -> None:
    batch = docs(200, datetime(2026, 11, 30, 10, tzinfo=UTC))
    sink = ClickHouseSink(settings_for(shards))
    try:
        assert sink.write(batch) == 200
        local = [int(scalar(ch, "SELECT count() FROM footprint.events_local")) for ch in shards]
        assert sum(local) == 200 and min(local) > 50, local  # both shards hold a part
        assert_each_event_on_its_shard(shards)
        # the sink's lookup finds every id through the Distributed event_ids, whichever shard holds it
        assert sink.write(batch) == 0
        assert sink.known(list(batch)) == set(batch)
        # a replay that bypasses the lookup (the at-least-once case the sort key must absorb) lands
        # on the shard of its first write: FINAL on each shard collapses it, the total stays 200
        sink._insert(list(batch.values())[:50])
        assert sum(int(scalar(ch, "SELECT count() FROM footprint.events_local")) for ch in shards) == 250
        assert_each_event_on_its_shard(shards)
        for ch in shards:
            assert scalar(ch, "SELECT count() FROM footprint.events FINAL") == "200"
            assert scalar(ch, "SELECT uniqExact(event_id) FROM footprint.events") == "200"
    finally:
        sink.close()


def test_the_rollups_fill_on_each_shard_and_read_through_the_distributed_table(
    shards: list[StandIn], migrated: list[str]
) -> None:
    batch = docs(60, datetime(2026, 11, 29, 8, tzinfo=UTC))
    write_all(shards, batch)  # 60 events
    day = "hour >= '2026-11-29 00:00:00' AND hour < '2026-11-30 00:00:00'"
    for ch in shards:
        assert scalar(ch, f"SELECT sum(events) FROM footprint.stats_hourly WHERE {day}") == "60"
        assert scalar(ch, f"SELECT uniqExactMerge(views) FROM footprint.link_hourly WHERE {day}") == "60"
        assert scalar(ch, f"SELECT uniqExactMerge(visitors) FROM footprint.stats_hourly WHERE {day}") == "13"
    assert all(int(scalar(ch, f"SELECT sum(events) FROM footprint.stats_hourly_local WHERE {day}")) > 0 for ch in shards)


def test_a_client_given_a_host_that_is_down_fails_over_to_the_next(shards: list[StandIn], migrated: list[str]) -> None:
    down = free_port()
    settings = settings_for(shards, hosts=f"127.0.0.1:{down},127.0.0.1:{shards[1].http_port}")
    client = ch_client(settings, "reader")
    try:
        # connected to the second host: its own local table is what shard 2 holds (its rows, not just
        # as many: the two shards may hold the same number of rows)
        held = "SELECT count(), sum(cityHash64(event_id)) FROM {}events_local"
        own = tuple(client.query(held.format("")).result_rows[0])
        assert " ".join(map(str, own)) == scalar(shards[1], held.format("footprint.")).replace("\t", " ")
        assert own[0] > 0
        assert " ".join(map(str, own)) != scalar(shards[0], held.format("footprint.")).replace("\t", " ")
        # and through the Distributed table it reads both shards
        everything = client.query("SELECT count() FROM events FINAL WHERE toDate(footprint_time) = '2026-11-30'")
        assert everything.result_rows[0][0] == 200
    finally:
        client.close()


def test_an_erasure_deletes_the_user_on_every_shard_and_rebuilds_each_shard_s_rollups(
    shards: list[StandIn], migrated: list[str]
) -> None:
    start = datetime(2026, 11, 28, 9, tzinfo=UTC)
    batch, ids = {}, {"erase-me": [], "keep-me": []}
    for i in range(80):  # 40 page views of "erase-me", 40 of "keep-me", over two hours
        who = "erase-me" if i % 2 else "keep-me"
        event = make_event(type="page", link=f"/e{i % 5}", user_id=who, anonymous_id=f"v{i % 9}", method="GET",
                           footprint_time=start + timedelta(minutes=i), received_at=start + timedelta(minutes=i))
        batch[event["event_id"]] = dumps(event)
        ids[who].append(str(event["event_id"]))
    write_all(shards, batch)  # 80 events
    user = "SELECT count() FROM footprint.{t} WHERE user_id = 'erase-me'"
    assert all(int(scalar(ch, user.format(t="events_local"))) > 0 for ch in shards)  # the user is on both
    day = "hour >= '2026-11-28 00:00:00' AND hour < '2026-11-29 00:00:00'"
    assert scalar(shards[0], f"SELECT sum(events) FROM footprint.stats_hourly WHERE {day}") == "80"

    with pytest.raises(StoreUnavailable, match=r"1 of 2 shards reached"):
        Eraser(settings_for(shards, hosts=f"127.0.0.1:{shards[0].http_port}")).erase_clickhouse("erase-me")
    assert scalar(shards[0], user.format(t="events")) == "40"  # refused before any shard was touched

    deleted, hours = Eraser(settings_for(shards)).erase_clickhouse("erase-me")
    assert deleted == 40
    assert [h.replace(tzinfo=None) for h in hours] == [datetime(2026, 11, 28, 9), datetime(2026, 11, 28, 10)]
    indexed = "SELECT count() FROM footprint.event_ids_local WHERE has([{}], toString(event_id))"
    for ch in shards:
        assert scalar(ch, user.format(t="events_local")) == "0"
        assert scalar(ch, indexed.format(",".join(f"'{i}'" for i in ids["erase-me"]))) == "0"
        assert int(scalar(ch, "SELECT count() FROM footprint.events_local WHERE user_id = 'keep-me'")) > 0
    # the kept user's ids are still in the index, across both shards
    assert sum(int(scalar(ch, indexed.format(",".join(f"'{i}'" for i in ids["keep-me"])))) for ch in shards) == 40
    # the rollups, read through the Distributed tables: only the kept user's 40 page views remain
    for ch in shards:
        assert scalar(ch, f"SELECT sum(events) FROM footprint.stats_hourly WHERE {day}") == "40"
        assert scalar(ch, f"SELECT uniqExactMerge(views) FROM footprint.link_hourly WHERE {day}") == "40"


def test_the_visits_read_through_the_distributed_tables_stored_in_part_and_made_of_the_rest(
    shards: list[StandIn], migrated: list[str]
) -> None:
    """The dashboard's visits on two shards: ``footprint close-visits`` stores a day's visits that have ended
    (in part, then whole) through the Distributed tables, and the visits read the stored ones and make the rest of
    the raw events, whose visitors' events lie on both shards (the raw part's ``GLOBAL IN``)."""
    day = datetime(2026, 11, 20, tzinfo=UTC)
    batch = {}
    for k in range(13):  # visitor k: two pages at 10:k, and for an even k one more at 13:k (a second visit)
        times = [day + timedelta(hours=10, minutes=k), day + timedelta(hours=10, minutes=k, seconds=30)]
        for t in times + ([day + timedelta(hours=13, minutes=k)] if k % 2 == 0 else []):
            event = make_event(type="page", link=f"/v{k}", anonymous_id=f"visitor-{k}", method="GET",
                               footprint_time=t, received_at=t)
            batch[event["event_id"]] = dumps(event)
    write_all(shards, batch)
    s = settings_for(shards)
    f = Filter(since=day.date(), until=day.date() + timedelta(days=1), type="page")
    assert run_clickhouse(s, f, ("visits",))["visits"] == [(20, 7, 35, 20, 1.65)]  # of the raw events alone
    # ended by each settled time less the 30-minute timeout: 10:05 -> 5 visits stored; 13:10 -> 13 + 5; the day's
    for settled, stored in ((day + timedelta(hours=10, minutes=35), 5), (day + timedelta(hours=13, minutes=40), 18),
                            (day + timedelta(days=2), 20)):
        report = close_visits(s, days=(f.since, f.until), settled=settled, under_way=timedelta(0))
        assert report.made == len(TYPES), report
        client = ch_client(s, "reader")
        try:
            kept = client.query("SELECT argMax(closed_at, verified_at) FROM visits_days WHERE type = 'page'"
                                " AND day = {day:Date32}", parameters={"day": day.date()}).result_rows[0][0]
            assert client.query("SELECT sum(visits) FROM visits_closed WHERE type = 'page'"
                                " AND closed_at = {at:DateTime64(6)}", parameters={"at": kept}).result_rows[0][0] == stored
        finally:
            client.close()
        assert run_clickhouse(s, f, ("visits",))["visits"] == [(20, 7, 35, 20, 1.65)], settled
    # a part stored by the first close-visits (the visits that start before ``through``, 10:00; reach 13:40: not the
    # timeout after it), naming the visits stored last, is not read: they would count again in the raw part
    client = ch_client(s, "writer")
    try:
        client.insert("visits_days", [("page", micros(EPOCH + timedelta(minutes=30)), day.date(), kept,
                                       micros(day + timedelta(hours=10)), micros(day + timedelta(hours=13, minutes=40)),
                                       datetime.now(UTC))],
                      column_names=["type", "gap_us", "day", "closed_at", "through_us", "reach_us", "verified_at"],
                      settings={"distributed_foreground_insert": 1})  # on its shard before it returns (as the closer)
    finally:
        client.close()
    assert _bound(s, f)["closed_until"] == day_number(day.date())
    assert run_clickhouse(s, f, ("visits",))["visits"] == [(20, 7, 35, 20, 1.65)]
    # a goal chooses visitors by their events on both shards too (GLOBAL IN; a plain IN is refused on a cluster)
    third = dataclasses.replace(f, goal="Third", goal_definition=Goal(name="Third", page="/v3"))
    assert run_clickhouse(s, third, ("visits",))["visits"] == [(1, 0, 0, 30, 2)]


def _bound(s: Settings, f: Filter) -> dict[str, Any]:
    """``closedvisits.bind``'s values for ``f`` (what the visits read of the stored ones)."""
    client = ch_client(s, "reader")
    try:
        return bind(client, f.type, Params.of(f).ch)
    finally:
        client.close()
