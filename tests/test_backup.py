"""The backup and restore drill (destructive: molecule only; README "Back up and restore").

Loads N events, backs up with playbooks/backup.yml, loads M more, destroys both stores' data on
the host (PostgreSQL's cluster directory and ClickHouse's data directory, the services stopped,
the consumer with them), loads K more while the stores are gone (the collector still accepts them
into Kafka), then restores with playbooks/restore.yml. Checks: every event sent (the N + M + K of
the drill, and all those the host held before it) exactly once in both stores as stored (raw rows,
no FINAL; the rollup counts each once), the two stores' stats the same (`footprint stats`), a
restore onto a store that holds events refused without footprint_restore_force, and the control
node's archive opens with the passphrase and holds the secrets. Prints how long the backup and
the restore took and how big the set is.

The restore runs without its site.yml step (footprint_restore_deploy=false): the host is installed,
only its data is gone, and the scenario's converge and idempotence runs prove site.yml already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import clickhouse_connect
import exactly_once
import httpx
import psycopg
import pytest
from conftest import ROOT, setting
from test_delivery import bearer, endpoints, kafka_positions, revealed, wait_for

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]

N, M, K = 2000, 1000, 500
BIN = Path(sys.executable).parent
BATCH = 500


def playbook(inventory: str, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = [str(BIN / "ansible-playbook"), "-i", inventory, str(ROOT / "playbooks" / name)]
    for item in extra:
        cmd += ["-e", item]
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1200)
    return res, time.monotonic() - start


def send(ep: dict[str, Any], tag: str, count: int) -> None:
    with httpx.Client(base_url=ep["collector"], timeout=30, verify=ep["verify"]) as http:
        for start in range(0, count, BATCH):
            batch = [{"type": "track", "event": "Drill", "userId": f"drill-{tag}-{n % 50}", "messageId": f"{tag}-{n}",
                      "properties": {"footprint_probe": True, "n": n}} for n in range(start, min(count, start + BATCH))]
            res = http.post("/v1/events", json={"batch": batch}, headers=bearer(ep["api_key"]))
            assert res.status_code == 202, res.text


def counts(ep: dict[str, Any]) -> dict[str, int]:
    """Rows as stored in each store, and distinct ids."""
    with psycopg.connect(**revealed(ep["pg"]), connect_timeout=5) as conn:
        pg_rows, pg_ids = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() or (0, 0)
    client = clickhouse_connect.get_client(**revealed(ep["ch"]), connect_timeout=5)
    try:
        ch_rows, ch_ids = client.query("SELECT count(), uniqExact(event_id) FROM events").result_rows[0]
    finally:
        client.close()
    return {"pg_rows": int(pg_rows), "pg_ids": int(pg_ids), "ch_rows": int(ch_rows), "ch_ids": int(ch_ids)}


def caught_up(ep: dict[str, Any]) -> bool:
    high, committed, _ = kafka_positions(ep)
    return high == committed


def stored(ep: dict[str, Any], tag: str) -> tuple[int, int]:
    """Rows of the drill's events with this tag, as stored, in each store."""
    prefix = f"drill-{tag}-"
    with psycopg.connect(**revealed(ep["pg"]), connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE user_id LIKE %s", (prefix + "%",)).fetchone()
    client = clickhouse_connect.get_client(**revealed(ep["ch"]), connect_timeout=5)
    try:
        ch = client.query("SELECT count() FROM events WHERE startsWith(user_id, {p:String})", parameters={"p": prefix})
    finally:
        client.close()
    return int(row[0] if row else 0), int(ch.result_rows[0][0])


def stored_exactly(ep: dict[str, Any], tag: str, count: int) -> bool:
    return stored(ep, tag) == (count, count)


@pytest.mark.destructive
def test_a_lost_stores_data_comes_back_with_every_event_once(
    request: pytest.FixtureRequest, host: Any, hostvars: dict[str, Any], endpoints: dict[str, Any], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ep = endpoints
    inventory = str(request.config.option.ansible_inventory)
    groups = set(setting(hostvars, "group_names"))
    assert {"app", "kafka", "clickhouse", "postgresql"} <= groups, "the drill destroys the stores of a one-host deployment"
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(uuid.uuid4().hex + "\n")
    control = tmp_path / "control"
    common = [f"footprint_backup_passphrase_file={passphrase}", f"footprint_backup_control_dir={control}"]
    tag = uuid.uuid4().hex[:8]

    send(ep, f"{tag}-n", N)
    wait_for(f"the {N} events in both stores", lambda: stored(ep, f"{tag}-n") == (N, N), timeout=180)
    res, backup_s = playbook(inventory, "backup.yml", *common)
    assert res.returncode == 0, "backup.yml failed:\n" + res.stdout[-6000:]
    sets = json.loads(host.check_output("/usr/local/sbin/footprint-backup list"))
    newest = sets[-1]
    assert {"kafka", "postgresql", "clickhouse", "control"} <= set(newest["parts"]), newest

    # PostgreSQL archives its WAL (the base backup ends with a segment switch), and nothing failed
    def archiver() -> list[int] | None:
        got = [int(x) for x in host.check_output("runuser -u postgres -- psql -XAtc "
                                                 "'SELECT archived_count, failed_count FROM pg_stat_archiver'").split("|")]
        return got if got[0] > 0 else None

    _archived, failed = wait_for("PostgreSQL's first archived WAL segment", archiver, timeout=60)
    assert failed == 0, f"pg_stat_archiver: {failed} failed attempts to archive WAL"
    assert host.file("/etc/footprint/backup.d/clickhouse.json").mode == 0o600  # the owner's password
    assert host.service("footprint-backup.timer").is_enabled and host.service("footprint-backup.timer").is_running

    send(ep, f"{tag}-m", M)
    wait_for(f"the {M} events after the backup in both stores", lambda: stored(ep, f"{tag}-m") == (M, M), timeout=180)
    wait_for("the consumer caught up", lambda: caught_up(ep), timeout=120)
    before = counts(ep)
    assert before["pg_rows"] == before["pg_ids"] == before["ch_rows"] == before["ch_ids"], before

    # the stores' data lost (as with a dead disk): the services stopped, their directories emptied
    pg = json.loads(host.check_output("cat /etc/footprint/backup.d/postgresql.json"))
    ch_data = json.loads(host.check_output("cat /etc/footprint/backup.d/clickhouse.json"))["data_path"]
    destroy = (f"systemctl stop footprint-consumer {pg['service']} clickhouse-server && rm -rf {pg['data_path']} "
               f"&& find {ch_data} -mindepth 1 -delete && systemctl start clickhouse-server")
    host.run_expect([0], destroy)
    send(ep, f"{tag}-k", K)  # accepted into Kafka while the stores are gone

    res, restore_s = playbook(inventory, "restore.yml", *common, "footprint_restore_deploy=false")
    assert res.returncode == 0, "restore.yml failed:\n" + res.stdout[-6000:]
    said = [line.strip() for line in res.stdout.splitlines() if line.strip().startswith("msg:")]
    assert any("offsets committed at backup time" in line for line in said), said

    for part, count in ((f"{tag}-n", N), (f"{tag}-m", M), (f"{tag}-k", K)):
        wait_for(f"the drill's {part} events in both stores, once", partial(stored_exactly, ep, part, count), timeout=300)
    wait_for("the consumer caught up", lambda: caught_up(ep), timeout=120)
    after = counts(ep)
    want = before["pg_rows"] + K
    assert after == {"pg_rows": want, "pg_ids": want, "ch_rows": want, "ch_ids": want}, (before, after)
    client = clickhouse_connect.get_client(**revealed(ep["ch"]))
    try:
        assert exactly_once.problems(client) == []
    finally:
        client.close()
    stats = host.run("set -a; . /etc/footprint/footprint.env; "
                     "exec runuser -u footprint -- /opt/footprint/venv/bin/footprint stats")
    assert stats.rc == 0 and "answers same" in stats.stdout and "DIFFERENT" not in stats.stdout, (
        f"footprint stats: rc {stats.rc}\n{stats.stdout[-2000:]}{stats.stderr[-1000:]}")

    # a second restore onto the restored (running, non-empty) store is refused without force
    refused = host.run("/usr/local/sbin/footprint-backup restore-clickhouse")
    assert refused.rc == 1 and "--force" in refused.stderr, refused.stderr
    assert counts(ep)["ch_rows"] == want

    # the control node's archive opens with the passphrase and holds the secrets
    archive = next(control.glob("*-control.tar.gz.vault"))
    opened = tmp_path / "control.tar.gz"
    subprocess.run([str(BIN / "ansible-vault"), "decrypt", "--vault-password-file", str(passphrase), "--output",
                    str(opened), str(archive)], check=True, capture_output=True)
    with tarfile.open(opened) as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"footprint_api_key", "ca.crt", "ca.key"} <= names, sorted(names)

    size = newest["bytes"]
    figures = (f"backup/restore drill: {N} events before the backup, {M} after it, {K} while the stores were gone; "
               f"backup.yml {backup_s:.0f} s (set {newest['set']}: {size / 1e6:.1f} MB, parts {', '.join(newest['parts'])}); "
               f"restore.yml {restore_s:.0f} s; afterwards {want} events in each store, each once")
    with capsys.disabled():  # shown without -s too
        print("\n" + "\n".join([figures, *said]))


@pytest.mark.destructive  # writes a backup set on the hosts
def test_every_shard_and_store_of_a_cluster_backs_up_its_own_part(
    request: pytest.FixtureRequest, host: Any, hostvars: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The cluster layout, as backup.yml runs it: Kafka's part first (on the first Kafka node; the
    others run the same code), then each ClickHouse host's own shard (its local tables and the
    Distributed ones) and PostgreSQL, one set name, each part verified after writing (the restore
    runs in the drill above, on one host)."""
    import testinfra

    groups = hostvars["groups"]
    if len(groups.get("clickhouse", [])) < 2:
        pytest.skip("one ClickHouse host: the drill above backs it up and restores it")
    if host.backend.get_hostname() != groups["app"][0]:
        pytest.skip("runs once, for every host")
    inventory = str(request.config.option.ansible_inventory)
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    order = [(groups["kafka"][0], "kafka")] + [(h, "clickhouse") for h in groups["clickhouse"]] + [
        (h, "postgresql") for h in groups.get("postgresql", [])]
    lines = []
    for hostname, part in order:
        other = testinfra.get_host(f"ansible://{hostname}?ansible_inventory={inventory}")
        res = other.run(f"/usr/local/sbin/footprint-backup run --set {name} --parts {part}")
        assert res.rc == 0, f"{hostname}: {part}: {res.stderr[-3000:]}"
        entry = json.loads(res.stdout)["parts"][part]
        verified = json.loads(other.check_output(f"/usr/local/sbin/footprint-backup verify --set {name}"))
        assert verified["parts"][part]["ok"], (hostname, verified)
        lines.append(f"{hostname}: {part} {entry['bytes'] / 1e6:.1f} MB in {entry['seconds']} s, verified")
    with capsys.disabled():  # shown without -s too
        print("\nbackup set " + name + " on the cluster:\n" + "\n".join(lines))
